"""ASGI middleware: what every request needs (request id, metrics, access log) and internal auth."""

import hmac
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microshop.common.errors import Problem, problem_response
from microshop.common.logs import request_id_var
from microshop.common.metrics import ServiceMetrics
from microshop.common.tracing import SpanContext, Tracer, parse_traceparent, random_hex

access_logger = logging.getLogger("microshop.access")
error_logger = logging.getLogger("microshop.errors")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes: not logged when they succeed, and open without the internal token."""
MAX_REQUEST_ID_LENGTH = 200


def _incoming_context(scope: Scope) -> tuple[str, SpanContext | None]:
    """The client's request id (or a new one) and the trace it continues, if any."""
    request_id = None
    parent = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isprintable():
                request_id = text
        elif name == b"traceparent":
            parent = parse_traceparent(value.decode("latin-1"))
    return request_id or random_hex(128), parent


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, tracer: Tracer, draining: Callable[[], bool]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, parent = _incoming_context(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0
        method = scope["method"]
        path = scope["path"]
        with self.tracer.span(f"{method} {path}", parent, "server") as span:
            context_headers = [
                (b"x-request-id", request_id.encode("latin-1")),
                (b"traceparent", span.traceparent.encode()),
            ]

            async def send_with_context(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = [*message.get("headers", ()), *context_headers]
                    if self.draining():
                        # Clients drop this keep-alive connection instead of reusing it.
                        headers.append((b"connection", b"close"))
                    message["headers"] = headers
                await send(message)

            self.metrics.in_flight.inc()
            try:
                await self.app(scope, receive, send_with_context)
            except Exception:
                # Answered here, inside the request's context, so that the log line and the
                # answer carry its request id and trace.
                error_logger.exception("unhandled error")
                if status:
                    raise
                problem = Problem(500, "An unexpected error occurred.")
                await problem_response(problem, Request(scope))(scope, receive, send_with_context)
            finally:
                self.metrics.in_flight.dec()
                elapsed = time.perf_counter() - started
                route_path = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.observe_request(method, route_path, status, elapsed)
                if path not in QUIET_PATHS or status >= 400:
                    access_logger.info(
                        "%s %s %d %.1fms",
                        method,
                        path,
                        status,
                        elapsed * 1000,
                        extra={
                            "method": method,
                            "path": path,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                        },
                    )
                request_id_var.reset(token)


class BearerTokenMiddleware:
    """Refuses calls without `Authorization: Bearer <token>`, except to `open_paths`."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str], refusal: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            presented = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(presented, self.expected):
                problem = Problem(401, self.refusal, headers={"WWW-Authenticate": "Bearer"})
                await problem_response(problem, Request(scope))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class InternalAuthMiddleware(BearerTokenMiddleware):
    """The internal services' token: probes and metric scrapes stay open."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(
            app, token, QUIET_PATHS, "This service accepts only calls from the shop's own services."
        )
