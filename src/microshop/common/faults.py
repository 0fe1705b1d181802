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

from microshop.common.errors import Problem
from microshop.common.identities import token_digest
from microshop.common.inputs import read_model
from microshop.common.metrics import ServiceMetrics
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings

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
        if initial.active:
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

    @property
    def switched_on(self) -> bool:
        """Whether any fault is on; while none is, a request need not ask `before_request`."""
        return self.faults is not HEALTHY

    async def before_request(self, path: str) -> None:
        """Slows down the request, or fails it with a `Problem`, as the faults say (asked only
        while `switched_on`)."""
        faults = self.faults
        if path in EXEMPT_PATHS:
            return
        delay = faults.request_delay()
        if delay:
            await asyncio.sleep(delay)
        if faults.error_rate and faults.fails_now():
            self.injected.labels(str(faults.error_status)).inc()
            raise Problem(
                faults.error_status,
                f"Failure injected on {self.service} (see /admin/faults).",
                headers={"Retry-After": "1"} if faults.error_status == 503 else None,
            )

    async def before_storage_call(self) -> None:
        if self.faults.storage_latency_seconds:
            await asyncio.sleep(self.faults.storage_latency_seconds)


def _from_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


OPERATOR_SERVICE = "api-gateway"
"""With per-service identities, the service whose credential may also switch the others' faults:
the pod an operator runs `kubectl exec deploy/api-gateway -- microshop chaos ...` in. Faults take
nothing but availability, which the gateway holds anyway; it never gains a write."""


class FaultAdmin:
    """`/admin/faults`, which decides for itself who may use it (the auth middleware lets it by).

    The public gateway answers only callers on its own machine (`kubectl exec`, `kubectl
    port-forward`, a laptop), so that no visitor of the shop can break it. An internal service
    answers as its other routes do: with the shared token set, only callers that present it; with
    per-service identities, callers on its own machine and the gateway's identity; with no internal
    authentication, anyone who can reach it.
    """

    def __init__(self, switch: FaultSwitch, settings: Settings, public: bool) -> None:
        self.switch = switch
        self._public = public
        token = settings.internal_token
        self._expected_token = None if token is None else f"Bearer {token.get_secret_value()}"
        self._identities = settings.service_token is not None or bool(settings.caller_digests)
        operator = settings.caller_digests.get(OPERATOR_SERVICE)
        self._operator_digest = None if operator is None else bytes.fromhex(operator)

    def routes(self) -> list[Route]:
        return [Route(ADMIN_PATH, self.handle, methods=["GET", "PUT", "DELETE"])]

    def _check_access(self, request: Request) -> None:
        local = _from_loopback(request)
        if self._public and not local:
            raise Problem(
                403, f"Faults of {self.switch.service} can be changed only from its own machine."
            )
        presented = request.headers.get("authorization", "")
        if self._expected_token is not None:
            if not hmac.compare_digest(presented.encode("latin-1"), self._expected_token.encode()):
                raise Problem(
                    401,
                    "Faults can be changed only with the internal token.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif self._identities and not local and not self._presents_operator(presented):
            raise Problem(
                403,
                f"Faults of {self.switch.service} can be changed only from its own machine or "
                f"by {OPERATOR_SERVICE}'s identity.",
            )

    def _presents_operator(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token or self._operator_digest is None:
            return False
        presented = token_digest(token.encode("latin-1"))
        return hmac.compare_digest(presented, self._operator_digest)

    async def handle(self, request: Request) -> Response:
        self._check_access(request)
        if request.method == "PUT":
            self.switch.set(await read_model(request, Faults))
        elif request.method == "DELETE":
            self.switch.set(HEALTHY)
        return JSONResponse(self.switch.faults.model_dump(mode="json"))
