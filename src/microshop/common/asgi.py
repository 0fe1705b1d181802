"""The ASGI app of a service: one layer around every request, and the busy routes called directly.

Every request passes through `ServiceApp.__call__` once, top to bottom: its request id and the
trace it continues, the guards that decide who may call, the faults switched on, the route, errors
answered as problem+json, then its metrics and access log line. A route whose path has no
parameters (all those an order passes through) is looked up by method and path in a dict and its
endpoint awaited directly; every other request (paths with ids, HEAD, 404, 405, redirects) goes
through Starlette's router and exception handling, which give the same answers more slowly.

This replaces a stack of six Starlette layers (error and exception middleware, three middleware
of ours, the router and its request wrapper), each with its own `send` and closure per request:
docs/performance.md measures the difference.
"""

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Lifespan, Message, Receive, Scope, Send

from microshop.common.errors import ExceptionHandler, Problem, problem_response
from microshop.common.guards import QUIET_PATHS, Guard
from microshop.common.logs import access_log, request_id_var
from microshop.common.tracing import SpanContext, parse_traceparent, random_hex

if TYPE_CHECKING:
    from microshop.common.app import Service

_error_logger = logging.getLogger("microshop.errors")

MAX_REQUEST_ID_LENGTH = 200
UNMATCHED_ROUTE = "unmatched"
"""The metrics' route label of a request that matched no route."""


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
            parent = parse_traceparent(value)
    return request_id or random_hex(128), parent


def _direct_routes(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], Route]:
    """The routes without path parameters whose endpoint is a coroutine function of a `Request`,
    by method and path.

    HEAD stays with the router, which answers it from GET; the first route of a method and path
    wins, as in the router.
    """
    direct: dict[tuple[str, str], Route] = {}
    for route in routes:
        if not isinstance(route, Route) or route.param_convertors:
            continue
        if route.endpoint is route.app or not inspect.iscoroutinefunction(route.endpoint):
            continue
        for method in route.methods or ():
            if method != "HEAD":
                direct.setdefault((method, route.path), route)
    return direct


class ServiceApp:
    """What uvicorn runs for a service (or the sandbox server): see the module's docstring."""

    def __init__(
        self,
        service: "Service",
        routes: Sequence[BaseRoute],
        exception_handlers: Mapping[type[Exception], ExceptionHandler],
        guards: Sequence[Guard],
        lifespan: Lifespan[Any],
    ) -> None:
        self.service = service
        self.routes = tuple(routes)
        """Every route the app serves, in the order the router tries them."""
        self.router = Router(list(routes), lifespan=lifespan)
        """Starlette's router: the routes that are not called directly, and the lifespan."""
        self._guards = tuple(guards)
        self._exception_handlers = dict(exception_handlers)
        self._direct = _direct_routes(routes)
        self._routed = ExceptionMiddleware(self.router, handlers=self._exception_handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # the router then raises its 404 and 405 for the handlers to answer
        if scope["type"] != "http":
            await self._routed(scope, receive, send)
            return
        service = self.service
        request_id, parent = _incoming_context(scope)
        request_id_token = request_id_var.set(request_id)
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        route = self._direct.get((method, path))
        status = 0
        with service.tracer.span(f"{method} {path}", parent, "server") as span:
            context_headers = [
                (b"x-request-id", request_id.encode("latin-1")),
                (b"traceparent", span.traceparent.encode()),
            ]
            if service.draining:
                # Clients drop this keep-alive connection instead of reusing it.
                context_headers.append((b"connection", b"close"))

            async def send_with_context(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), *context_headers]
                await send(message)

            service.metrics.in_flight += 1
            try:
                request = Request(scope, receive)
                try:
                    refusal = self._refusal(scope)
                    if refusal is not None:
                        raise refusal
                    if service.faults.switched_on:
                        await service.faults.before_request(path)
                    if route is None:
                        await self._routed(scope, receive, send_with_context)
                        return
                    response = await route.endpoint(request)
                except Exception as error:
                    if status:
                        raise
                    response = await self._answer_error(request, error)
                await response(scope, receive, send_with_context)
            except Exception:
                # Answered here, inside the request's context, so that the log line and the
                # answer carry its request id and trace.
                _error_logger.exception("unhandled error")
                if status:
                    raise
                problem = problem_response(Problem(500, "An unexpected error occurred."), request)
                await problem(scope, receive, send_with_context)
            finally:
                service.metrics.in_flight -= 1
                elapsed = time.perf_counter() - started
                if route is None:
                    route_path = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
                else:
                    route_path = route.path
                service.metrics.observe_request(method, route_path, status, elapsed)
                if path not in QUIET_PATHS or status >= 400:
                    access_log.write(method, path, status, elapsed)
                request_id_var.reset(request_id_token)

    def _refusal(self, scope: Scope) -> Problem | None:
        """The `Problem` of the first guard that refuses this request, if one does."""
        for guard in self._guards:
            refusal = guard(scope)
            if refusal is not None:
                return refusal
        return None

    async def _answer_error(self, request: Request, error: Exception) -> Response:
        """The answer of the handler registered for the error's class or its nearest base;
        errors no handler knows are raised again."""
        for kind in type(error).__mro__:
            handler = self._exception_handlers.get(kind)
            if handler is not None:
                return await handler(request, error)
        raise error
