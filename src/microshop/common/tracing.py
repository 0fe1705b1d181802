"""W3C trace context: one trace id follows an order through all four services.

Every request is a span: its `traceparent` comes back to the client, every call it makes to another
service carries it on, and every log line names its trace. With the `otel` extra installed and
`OTEL_EXPORTER_OTLP_ENDPOINT` set, the same spans are also exported over OTLP; without them no
OpenTelemetry code is imported at all.
"""

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("microshop.tracing")

OTLP_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass(frozen=True, slots=True)
class SpanContext:
    trace_id: str
    span_id: str
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def random_hex(bits: int) -> str:
    """A random, never-zero id. Not a secret: no system call to the kernel's generator for it."""
    return f"{random.getrandbits(bits) | 1:0{bits // 4}x}"


current_span: ContextVar[SpanContext | None] = ContextVar("current_span", default=None)


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A valid version-00 `traceparent`, or None (then the request starts a new trace)."""
    if not value:
        return None
    parts = value.strip().lower().split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    _, trace_id, span_id, flags = parts
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        int(trace_id, 16), int(span_id, 16), int(flags, 16)
    except ValueError:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return SpanContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1))


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

    @contextmanager
    def span(self, name: str, parent: SpanContext | None, kind: str) -> Iterator[SpanContext]:
        if self.otel_tracer is None:
            trace_id = parent.trace_id if parent else random_hex(128)
            context = SpanContext(trace_id, random_hex(64), parent.sampled if parent else True)
            token = current_span.set(context)
            try:
                yield context
            finally:
                current_span.reset(token)
            return
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
