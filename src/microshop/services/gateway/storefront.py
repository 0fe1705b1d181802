"""The storefront: a page to place and follow orders, and `/status`, the shop's health at a glance.

The page is plain HTML, CSS and JavaScript shipped inside the package, so there is no build step
and nothing is loaded from the internet; it uses only the gateway's public API.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from microshop import __version__
from microshop.common.app import READINESS_TIMEOUT_SECONDS, Service
from microshop.common.errors import Problem
from microshop.common.http_client import ServiceClient
from microshop.common.openapi import ApiRoute
from microshop.common.responses import PAGE_HEADERS, JSONResponse

PACKAGE = "microshop.services.gateway"
PROBE_TIMEOUT_SECONDS = READINESS_TIMEOUT_SECONDS + 0.25
"""Just longer than a service's own check of what it depends on, so that a service that is down
because another one is can say so, instead of merely timing out too."""
PROBE_GRACE_SECONDS = 0.25
"""A probe's deadline lies just past its HTTP timeout, so that the timeout normally reports."""

Check = Callable[[], Awaitable[str]]
"""Asks one service whether it is ready; returns its version, raises when it is not."""


class ServiceHealth(BaseModel):
    """One service as its readiness check saw it just now."""

    service: str
    state: Literal["up", "down"]
    version: str | None = Field(description="The version the service reports; null when down.")
    latency_ms: float = Field(description="How long the readiness check took.")
    error: str | None = Field(description="Why the service is down; null when up.")


class ShopStatus(BaseModel):
    services: list[ServiceHealth]


async def probe(service: str, check: Check) -> ServiceHealth:
    """Never raises: a service that fails or does not answer in time is reported down."""
    started = time.perf_counter()
    version: str | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS + PROBE_GRACE_SECONDS):
            version = await check()
    except TimeoutError:
        error = f"{service} did not answer within {PROBE_TIMEOUT_SECONDS:g} s."
    except Problem as problem:
        error = problem.detail or problem.title
    except Exception as unexpected:  # a broken answer is a down service, not a broken page
        error = f"{service} gave an unexpected answer ({type(unexpected).__name__})."
    return ServiceHealth(
        service=service,
        state="down" if error else "up",
        version=version,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        error=error,
    )


def readyz_of(client: ServiceClient) -> Check:
    async def check() -> str:
        # One attempt, no retries: the panel shows what a caller would see right now.
        answer = await client.request(
            "GET", "/readyz", timeout=PROBE_TIMEOUT_SECONDS, idempotent=False
        )
        answer.raise_for_problem(client.target)
        return str(answer.json()["version"])

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
                summary="Readiness, version and latency of each of the four services.",
                responses={200: ShopStatus},
            ),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=PAGE_HEADERS)

    async def status(self, request: Request) -> Response:
        async def own_readiness() -> str:
            # The gateway's own /readyz, asked in process: it needs no address for itself.
            await self.gateway.readyz(request)
            return __version__

        checks: list[tuple[str, Check]] = [(self.gateway.name, own_readiness)]
        checks += [(client.target, readyz_of(client)) for client in self.others]
        services = await asyncio.gather(*(probe(name, check) for name, check in checks))
        return JSONResponse(ShopStatus(services=list(services)).model_dump(mode="json"))
