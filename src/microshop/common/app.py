"""The app factory: every service is a `Service` subclass turned into a `ServiceApp` the same way.

Reading one service teaches the others: each adds its routes and, where it has one, its start-up,
shutdown and readiness check; health, readiness, metrics, OpenAPI, errors, internal auth, request
ids and access logs come from here and from common/asgi.py.
"""

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from microshop import __version__
from microshop.common.asgi import ServiceApp
from microshop.common.errors import EXCEPTION_HANDLERS, ExceptionHandler, Problem
from microshop.common.faults import HEALTHY, FaultAdmin, Faults, FaultSwitch
from microshop.common.guards import Guard, ServiceIdentityGuard, internal_token_guard
from microshop.common.http_client import HttpSession, ServiceClient
from microshop.common.metrics import ServiceMetrics
from microshop.common.openapi import build_openapi, docs_page, share_allowed_methods
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings
from microshop.common.tracing import Tracer
from microshop.services import PERMITTED_CALLERS, callers_of

logger = logging.getLogger("microshop.app")


class Service:
    """Base of the four services: owns settings, metrics and the outgoing HTTP session."""

    name: str = "service"
    public: bool = False
    """Public services never ask who calls; the others do when internal auth is configured."""
    has_storage: bool = False
    """Whether the slow-storage fault applies: only db keeps data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.tracer = Tracer(self.name)
        self.http = HttpSession(settings, self.metrics, self.tracer)
        self.faults = FaultSwitch(self.name, self.metrics, self.has_storage, self.initial_faults())
        self.draining = False

    def routes(self) -> Sequence[BaseRoute]:
        raise NotImplementedError

    def exception_handlers(self) -> Mapping[type[Exception], ExceptionHandler]:
        """Errors of this service's own kinds, turned into answers."""
        return {}

    def guards(self) -> Sequence[Guard]:
        """Who may call this service, checked after the shared internal auth."""
        return ()

    def initial_faults(self) -> Faults:
        """The faults switched on at start-up; none unless a service reads a setting for them."""
        return HEALTHY

    async def start(self) -> None:
        await self.http.open()

    async def stop(self) -> None:
        await self.http.close()
        self.tracer.close()

    async def check_ready(self) -> None:
        """Raises `Problem` when this pod cannot serve its own requests; by default it can.

        Only what the service itself owns counts (db: its storage), never another service: an
        unready pod leaves its Kubernetes Service, so readiness that followed a dependency would
        take the whole chain out of rotation and turn a documented 503 into refused connections.
        Dependencies' health is in the gateway's `/status` and in the metrics instead.
        """

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": self.name, "version": __version__})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            raise Problem(503, f"{self.name} is shutting down.")
        await self.check_ready()
        answer: dict[str, Any] = {"status": "ready", "service": self.name, "version": __version__}
        if self.faults.faults.active:  # shown on the storefront's status panel
            answer["faults"] = self.faults.faults.model_dump(mode="json")
        return JSONResponse(answer)


def create_app(service: Service) -> ServiceApp:
    own_routes = list(service.routes())
    share_allowed_methods(own_routes)
    settings = service.settings
    protected = not service.public and (
        settings.internal_token is not None
        or settings.service_token is not None
        or bool(settings.caller_digests)
    )
    spec: dict[str, Any] = build_openapi(service.name, __version__, own_routes, protected=protected)
    page = docs_page(spec)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        await service.start()
        logger.info("%s %s ready on port %s", service.name, __version__, service.settings.port)
        try:
            yield
        finally:
            await service.stop()
            logger.info("%s stopped", service.name)

    routes: list[BaseRoute] = [
        *own_routes,
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    routes += FaultAdmin(service.faults, settings, service.public).routes()
    return ServiceApp(
        service,
        routes,
        exception_handlers={**EXCEPTION_HANDLERS, **service.exception_handlers()},
        guards=[*_internal_auth(service), *service.guards()],
        lifespan=lifespan,
    )


def _internal_auth(service: Service) -> list[Guard]:
    """Who may call an internal service: with per-service identities (a service token or caller
    digests set) only its callers, each on its own routes; with the shared token, whoever holds
    it; with neither, anyone, as in the seed."""
    settings = service.settings
    if service.public:
        return []
    if settings.service_token is not None or settings.caller_digests:
        unknown = sorted(callers_of(service.name) - settings.caller_digests.keys())
        if unknown:
            logger.warning(
                "MICROSHOP_CALLER_DIGESTS has no digest for %s: %s calls will be refused",
                ", ".join(unknown),
                "their" if len(unknown) > 1 else "its",
            )
        digests = {name: bytes.fromhex(digest) for name, digest in settings.caller_digests.items()}
        grants = PERMITTED_CALLERS.get(service.name, {})
        return [ServiceIdentityGuard(service.name, digests, grants)]
    if settings.internal_token is not None:
        return [internal_token_guard(settings.internal_token.get_secret_value())]
    return []


async def relay(client: ServiceClient, path: str, params: dict[str, str] | None = None) -> Response:
    """Answers with what another service answered to a GET, body untouched."""
    answer = await client.request("GET", path, params=params)
    answer.raise_for_problem()
    return Response(answer.body, status_code=answer.status, media_type="application/json")
