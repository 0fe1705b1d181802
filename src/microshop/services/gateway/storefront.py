"""The storefront: a page to place and follow orders, and `/status`, the shop's health at a glance.

The page is plain HTML, CSS and JavaScript shipped inside the package, so there is no build step
and nothing is loaded from the internet; it uses only the gateway's public API.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from microshop import __version__
from microshop.common.app import Service
from microshop.common.errors import Problem
from microshop.common.faults import Faults
from microshop.common.http_client import ServiceClient
from microshop.common.openapi import ApiRoute
from microshop.common.responses import PAGE_HEADERS, JSONResponse

PACKAGE = "microshop.services.gateway"
PROBE_TIMEOUT_SECONDS = 1.25
"""How long a service's /readyz may take: each answers from its own state (db after one round trip
to its storage), so a slower answer means the service is in trouble itself."""
PROBE_GRACE_SECONDS = 0.25
"""A probe's deadline lies just past its HTTP timeout, so that the timeout normally reports."""

Check = Callable[[], Awaitable["Readiness"]]
"""Asks one service whether it is ready; raises when it is not."""


@dataclass(frozen=True)
class Readiness:
    version: str | None
    health_endpoint: bool = True
    faults: Faults | None = None


class ServiceHealth(BaseModel):
    """One service as its readiness check saw it just now."""

    service: str
    state: Literal["up", "down"]
    version: str | None = Field(
        description="The version the service reports; null when down or when it has none."
    )
    latency_ms: float = Field(description="How long the readiness check took.")
    error: str | None = Field(description="Why the service is down; null when up.")
    health_endpoint: bool = Field(
        default=True,
        description="False for a service without /readyz (the seed's): it is up while it answers "
        "HTTP at all.",
    )
    faults: Faults | None = Field(
        default=None, description="The faults switched on in the service (/admin/faults), if any."
    )


class ServiceIdentity(BaseModel):
    """What this page reads of a service's /readyz answer."""

    version: str | None = None
    faults: Faults | None = None


class ShopStatus(BaseModel):
    services: list[ServiceHealth]


async def _probe(service: str, check: Check) -> ServiceHealth:
    """Never raises: a service that fails or does not answer in time is reported down."""
    started = time.perf_counter()
    readiness = Readiness(version=None)
    error: str | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS + PROBE_GRACE_SECONDS):
            readiness = await check()
    except TimeoutError:
        error = f"{service} did not answer within {PROBE_TIMEOUT_SECONDS:g} s."
    except Problem as problem:
        error = problem.detail or problem.title
    except Exception as unexpected:  # a broken answer is a down service, not a broken page
        error = f"{service} gave an unexpected answer ({type(unexpected).__name__})."
    return ServiceHealth(
        service=service,
        state="down" if error else "up",
        version=readiness.version,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        error=error,
        health_endpoint=readiness.health_endpoint,
        faults=readiness.faults,
    )


def _readyz_of(client: ServiceClient) -> Check:
    async def check() -> Readiness:
        # One attempt, no retries: the panel shows what a caller would see right now.
        answer = await client.request(
            "GET", "/readyz", timeout=PROBE_TIMEOUT_SECONDS, idempotent=False
        )
        if answer.route_missing:  # no health endpoint of its own, but it answers: it is up
            return Readiness(version=None, health_endpoint=False)
        answer.raise_for_problem()
        identity = answer.read(ServiceIdentity)
        return Readiness(version=identity.version, faults=identity.faults)

    return check


class Storefront:
    """The gateway's page, its files, and the status of the four services that the page shows."""

    def __init__(self, gateway: Service) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.others = [
            gateway.http.client("order-service", settings.order_service_url),
            gateway.http.client("payment-service", settings.payment_service_url),
            gateway.http.client("db", settings.db_service_url),
        ]
        self.page = (files(PACKAGE) / "static" / "index.html").read_text(encoding="utf-8")

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Mount("/static", app=StaticFiles(packages=[(PACKAGE, "static")]), name="static"),
            ApiRoute(
                "/status",
                self.status,
                methods=["GET"],
                summary="Readiness, version, latency and faults of each of the four services.",
                responses={200: ShopStatus},
            ),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=PAGE_HEADERS)

    async def status(self, request: Request) -> Response:
        async def own_readiness() -> Readiness:
            # The gateway's own /readyz, asked in process: it needs no address for itself.
            await self.gateway.readyz(request)
            faults = self.gateway.faults.faults
            return Readiness(version=__version__, faults=faults if faults.active else None)

        checks: list[tuple[str, Check]] = [(self.gateway.name, own_readiness)]
        checks += [(client.target, _readyz_of(client)) for client in self.others]
        services = await asyncio.gather(*(_probe(name, check) for name, check in checks))
        return JSONResponse(ShopStatus(services=list(services)).model_dump(mode="json"))
