"""ASGI middleware: what every request needs (request id, metrics, access log) and internal auth."""

import hmac
import logging
import time
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microshop.common.errors import Problem, problem_response
from microshop.common.faults import ADMIN_PATH
from microshop.common.identities import token_digest
from microshop.common.logs import access_log, request_id_var
from microshop.common.metrics import ServiceMetrics
from microshop.common.tracing import SpanContext, Tracer, parse_traceparent, random_hex

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
                    access_log.write(method, path, status, elapsed)
                request_id_var.reset(token)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INTERNAL_REFUSAL = "This service accepts only calls from the shop's own services."
_DESCRIPTION_PATHS = frozenset({"/openapi.json", "/docs"})
_SELF_GUARDED_PATHS = QUIET_PATHS | {ADMIN_PATH}
"""Let by: probes and scrapes are open, and `/admin/faults` decides who may use it itself
(common/faults.py)."""


async def _refuse(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
    await problem_response(problem, Request(scope))(scope, receive, send)


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
                await _refuse(Problem(401, self.refusal, headers=_CHALLENGE), scope, receive, send)
                return
        await self.app(scope, receive, send)


class InternalAuthMiddleware(BearerTokenMiddleware):
    """The token shared by all services: probes and metric scrapes stay open."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app, token, _SELF_GUARDED_PATHS, _INTERNAL_REFUSAL)


class ServiceIdentityMiddleware:
    """Per-service identities: knows each caller by the SHA-256 digest of the bearer token it
    presents (so this process holds no caller's credential) and lets it call only the routes that
    `grants` gives it. Unknown or missing credentials are 401; a known caller on a route that is
    not its own is 403. Probes and metric scrapes stay open."""

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        caller_digests: Mapping[str, bytes],
        grants: Mapping[tuple[str, str], frozenset[str]],
    ) -> None:
        self.app = app
        self.service = service
        self.caller_digests = dict(caller_digests)
        self.grants = grants

    def _caller(self, scope: Scope) -> str | None:
        presented = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = presented.partition(b" ")
        if scheme != b"Bearer" or not token:
            return None
        digest = token_digest(token)
        caller = None
        for name, expected in self.caller_digests.items():  # every one compared: constant time
            if hmac.compare_digest(digest, expected):
                caller = name
        return caller

    def _permitted(self, caller: str, method: str, path: str) -> bool:
        method = "GET" if method == "HEAD" else method
        if method == "GET" and path in _DESCRIPTION_PATHS:
            return True
        resource = "/" + path.split("/", 2)[1]
        return caller in self.grants.get((method, resource), frozenset())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _SELF_GUARDED_PATHS:
            caller = self._caller(scope)
            if caller is None:
                problem = Problem(401, _INTERNAL_REFUSAL, headers=_CHALLENGE)
                await _refuse(problem, scope, receive, send)
                return
            method, path = scope["method"], scope["path"]
            if not self._permitted(caller, method, path):
                detail = f"{caller} may not call {method} {path} of {self.service}."
                await _refuse(Problem(403, detail), scope, receive, send)
                return
        await self.app(scope, receive, send)
