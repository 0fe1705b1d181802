"""Faults switched on and off while the shop runs, to watch it degrade and recover.

Every service carries a `FaultSwitch`: latency before each request (fixed or drawn from a
distribution), a share of requests failed with a chosen status, and, on db, slow storage. Its admin
endpoint `/admin/faults` shows (GET), sets (PUT) and clears (DELETE) them; `microshop chaos` calls
it. Faults live in the process's memory, so a restart clears them (except what the start-up
variables set). Probes, metrics and the admin endpoint itself are never slowed or failed, so that
Kubernetes and the operator keep seeing the truth.
"""

import asyncio
import hmac
import ipaddress
import logging
import random
from enum import StrEnum

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from microshop.common.errors import Problem, problem_response
from microshop.common.inputs import read_model
from microshop.common.metrics import ServiceMetrics
from microshop.common.responses import JSONResponse

logger = logging.getLogger("microshop.faults")

ADMIN_PATH = "/admin/faults"
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", ADMIN_PATH})
MAX_FAULT_SECONDS = 600.0


class LatencyDistribution(StrEnum):
    FIXED = "fixed"
    """Every request waits exactly the latency."""
    UNIFORM = "uniform"
    """Waits between none and twice the latency."""
    EXPONENTIAL = "exponential"
    """Mostly short waits and a long tail, as real slowness looks; the latency is the mean."""


class Faults(BaseModel):
    """What one service does wrong on purpose; the defaults are a healthy service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_seconds: float = Field(
        default=0, ge=0, le=MAX_FAULT_SECONDS, description="Mean wait before each request."
    )
    latency_distribution: LatencyDistribution = LatencyDistribution.FIXED
    error_rate: float = Field(
        default=0, ge=0, le=1, description="Share of requests answered with `error_status`."
    )
    error_status: int = Field(default=503, ge=400, le=599)
    storage_latency_seconds: float = Field(
        default=0,
        ge=0,
        le=MAX_FAULT_SECONDS,
        description="db only: wait before each storage call, readiness checks included.",
    )

    @property
    def active(self) -> bool:
        return bool(self.latency_seconds or self.error_rate or self.storage_latency_seconds)

    def request_delay(self) -> float:
        mean = self.latency_seconds
        if not mean or self.latency_distribution is LatencyDistribution.FIXED:
            return mean
        if self.latency_distribution is LatencyDistribution.UNIFORM:
            return random.uniform(0, 2 * mean)
        return min(random.expovariate(1 / mean), MAX_FAULT_SECONDS)

    def fails_now(self) -> bool:
        return random.random() < self.error_rate

    def describe(self) -> str:
        """One line for logs and the command line, naming only what is on."""
        parts = []
        if self.latency_seconds:
            parts.append(f"{self.latency_seconds:g} s {self.latency_distribution} latency")
        if self.error_rate:
            parts.append(f"{self.error_rate:.0%} answered {self.error_status}")
        if self.storage_latency_seconds:
            parts.append(f"{self.storage_latency_seconds:g} s slower storage")
        return ", ".join(parts) or "none"


HEALTHY = Faults()


class FaultSwitch:
    """The faults of one service, changed at run time and exported as metrics."""

    def __init__(
        self, service: str, metrics: ServiceMetrics, has_storage: bool, initial: Faults
    ) -> None:
        self.service = service
        self.has_storage = has_storage
        self.faults = HEALTHY
        registry = metrics.registry
        self._latency = Gauge(
            "fault_latency_seconds", "Mean latency injected before requests.", registry=registry
        )
        self._error_rate = Gauge(
            "fault_error_rate", "Share of requests failed on purpose.", registry=registry
        )
        self._storage_latency = Gauge(
            "fault_storage_latency_seconds",
            "Latency injected before storage calls (db).",
            registry=registry,
        )
        self.injected = Counter(
            "faults_injected", "Requests failed on purpose.", ["status"], registry=registry
        )
        self.set(initial)

    def set(self, faults: Faults) -> None:
        if faults.storage_latency_seconds and not self.has_storage:
            raise Problem(422, f"{self.service} has no storage to slow down; only db has.")
        self.faults = faults if faults.active else HEALTHY
        self._latency.set(faults.latency_seconds)
        self._error_rate.set(faults.error_rate)
        self._storage_latency.set(faults.storage_latency_seconds)
        if faults.active:
            logger.warning("faults on for %s: %s", self.service, faults.describe())
        else:
            logger.info("faults cleared for %s", self.service)

    async def before_storage_call(self) -> None:
        if self.faults.storage_latency_seconds:
            await asyncio.sleep(self.faults.storage_latency_seconds)


class FaultInjectionMiddleware:
    """Slows down and fails requests as the switch says; costs one attribute read when off."""

    def __init__(self, app: ASGIApp, switch: FaultSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.switch.faults
        if faults is HEALTHY or scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        delay = faults.request_delay()
        if delay:
            await asyncio.sleep(delay)
        if faults.error_rate and faults.fails_now():
            self.switch.injected.labels(str(faults.error_status)).inc()
            problem = Problem(
                faults.error_status,
                f"Failure injected on {self.switch.service} (see /admin/faults).",
                headers={"Retry-After": "1"} if faults.error_status == 503 else None,
            )
            await problem_response(problem, Request(scope))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _from_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultAdmin:
    """`/admin/faults`. With the internal token set, only callers that present it may use it;
    without one, only callers on the same machine (a laptop, or `kubectl exec` and `kubectl
    port-forward` into the pod). A public service (the gateway) answers only callers on its own
    machine in any case, so that no visitor of the shop can break it, token or not."""

    def __init__(self, switch: FaultSwitch, token: str | None, public: bool) -> None:
        self.switch = switch
        self._expected = None if token is None else f"Bearer {token}".encode()
        self._local_only = public or token is None

    def routes(self) -> list[Route]:
        return [Route(ADMIN_PATH, self.handle, methods=["GET", "PUT", "DELETE"])]

    def _check_access(self, request: Request) -> None:
        if self._local_only and not _from_loopback(request):
            raise Problem(
                403, f"Faults of {self.switch.service} can be changed only from its own machine."
            )
        if self._expected is None:
            return
        presented = request.headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(presented, self._expected):
            raise Problem(
                401,
                "Faults can be changed only with the internal token.",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def handle(self, request: Request) -> Response:
        self._check_access(request)
        if request.method == "PUT":
            self.switch.set(await read_model(request, Faults))
        elif request.method == "DELETE":
            self.switch.set(HEALTHY)
        return JSONResponse(self.switch.faults.model_dump(mode="json"))
