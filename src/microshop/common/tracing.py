"""W3C trace context: one trace id follows an order through all four services.

Every request is a span: its `traceparent` comes back to the client, every call it makes to another
service carries it on, and every log line names its trace. With the `otel` extra installed and
`OTEL_EXPORTER_OTLP_ENDPOINT` set, the same spans are also exported over OTLP; without them no
OpenTelemetry code is imported at all.
"""

import logging
import os
import random
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

logger = logging.getLogger("microshop.tracing")

OTLP_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


class SpanContext:
    """The ids of a span. A plain class with slots: two are made for every request and one for
    every call, and a frozen dataclass sets each field through `object.__setattr__`."""

    __slots__ = ("sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, sampled: bool = True) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled

    @property
    def traceparent(self) -> str:
        """The header that carries this span on, to the client or to the next service."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def __repr__(self) -> str:
        return f"SpanContext({self.traceparent!r})"


def random_hex(bits: int) -> str:
    """A random, never-zero id. Not a secret: no system call to the kernel's generator for it."""
    return (random.getrandbits(bits) | 1).to_bytes(bits // 8).hex()


current_span: ContextVar[SpanContext | None] = ContextVar("current_span", default=None)

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = b"0" * 32
_ZERO_SPAN_ID = b"0" * 16


def parse_traceparent(value: bytes) -> SpanContext | None:
    """A valid version-00 `traceparent` header, or None (then the request starts a new trace).

    Read as it arrived first: the shop's services send it exactly so; any other sender's is
    read again without surrounding spaces and in lower case."""
    match = _TRACEPARENT.fullmatch(value) or _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return SpanContext(trace_id.decode(), span_id.decode(), sampled=bool(int(flags, 16) & 1))


class _Span:
    """A span that is not exported: it only makes its ids the current ones while it lasts."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: SpanContext) -> None:
        self._context = context

    def __enter__(self) -> SpanContext:
        self._token = current_span.set(self._context)
        return self._context

    def __exit__(self, *exception: object) -> None:
        current_span.reset(self._token)


class Tracer:
    """Makes spans; exports them only when OpenTelemetry is configured."""

    def __init__(self, service: str) -> None:
        self.provider: Any = None
        self.otel_tracer: Any = None
        if os.environ.get(OTLP_ENDPOINT_VARIABLE):
            self.provider = otel_provider(service)
            self.otel_tracer = self.provider and self.provider.get_tracer("microshop")

    def close(self) -> None:
        """Sends the spans still buffered."""
        if self.provider is not None:
            self.provider.shutdown()

    def span(
        self, name: str, parent: SpanContext | None, kind: str
    ) -> AbstractContextManager[SpanContext]:
        """A span continuing `parent` (or a new trace); its context is `current_span` inside."""
        if self.otel_tracer is None:
            if parent is None:
                return _Span(SpanContext(random_hex(128), random_hex(64)))
            return _Span(SpanContext(parent.trace_id, random_hex(64), parent.sampled))
        return self._exported_span(name, parent, kind)

    @contextmanager
    def _exported_span(
        self, name: str, parent: SpanContext | None, kind: str
    ) -> Iterator[SpanContext]:
        with otel_span(self.otel_tracer, name, parent, kind) as context:
            token = current_span.set(context)
            try:
                yield context
            finally:
                current_span.reset(token)


def otel_provider(service: str) -> Any:
    """An OpenTelemetry tracer provider exporting over OTLP/HTTP, or None without the extra."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "%s is set but OpenTelemetry is not installed: pip install 'microshop[otel]'",
            OTLP_ENDPOINT_VARIABLE,
        )
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger.info("exporting traces to %s", os.environ[OTLP_ENDPOINT_VARIABLE])
    return provider


@contextmanager
def otel_span(
    tracer: Any, name: str, parent: SpanContext | None, kind: str
) -> Iterator[SpanContext]:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanKind, TraceFlags
    from opentelemetry.trace import SpanContext as OtelSpanContext

    parent_context = None
    if parent is not None:
        remote = OtelSpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(1 if parent.sampled else 0),
        )
        parent_context = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        name, context=parent_context, kind=getattr(SpanKind, kind.upper())
    ) as span:
        context = span.get_span_context()
        yield SpanContext(
            format(context.trace_id, "032x"),
            format(context.span_id, "016x"),
            bool(context.trace_flags & 1),
        )
