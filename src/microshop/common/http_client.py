"""Calls between services: one pooled keep-alive session, a timeout on every call, bounded retries.

Only calls that are safe to repeat are retried (GET, or a POST the caller marks idempotent
because it carries an idempotency key), and only when the connection failed before an answer.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from pydantic import BaseModel, HttpUrl, TypeAdapter, ValidationError
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectTimeoutError, PoolTimeoutError, RequestError

from microshop.common.errors import Problem
from microshop.common.logs import request_id_var
from microshop.common.metrics import ServiceMetrics
from microshop.common.settings import Settings
from microshop.common.tracing import Tracer, current_span

logger = logging.getLogger("microshop.http_client")

RETRY_BACKOFF_SECONDS = 0.05
POOL_IDLE_SECONDS = 30
MAX_IDLE_CONNECTIONS_PER_SERVICE = 256
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

ModelT = TypeVar("ModelT", bound=BaseModel)


class DownstreamUnavailable(Problem):
    def __init__(self, target: str) -> None:
        super().__init__(
            503,
            f"{target} is unavailable; try again shortly.",
            title="Service Unavailable",
            headers={"Retry-After": "1"},
        )


class DownstreamTimeout(Problem):
    def __init__(self, target: str, seconds: float) -> None:
        super().__init__(
            504, f"{target} did not answer within {seconds:g} s.", title="Gateway Timeout"
        )


@dataclass(frozen=True, slots=True)
class DownstreamResponse:
    target: str
    status: int
    headers: Mapping[str, str]
    """Case-insensitive, as HTTP header names are."""
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def read(self, model: type[ModelT]) -> ModelT:
        """The body as `model`; an answer that is not what was asked for is a failed call (502)."""
        try:
            return model.model_validate_json(self.body)
        except ValidationError:
            raise self.unreadable() from None

    def read_list(self, adapter: TypeAdapter[list[ModelT]]) -> list[ModelT]:
        try:
            return adapter.validate_json(self.body)
        except ValidationError:
            raise self.unreadable() from None

    def unreadable(self) -> Problem:
        logger.warning("%s answered %d with an unreadable body", self.target, self.status)
        return Problem(502, f"{self.target} gave an answer that could not be read.")

    def problem_inside(self) -> Problem:
        """The error in a problem document that a peer passed on with a success status, as the
        seed's services do with whatever their own peer answered."""
        with contextlib.suppress(orjson.JSONDecodeError):
            body = self.json()
            status = body.get("status") if isinstance(body, dict) else None
            if isinstance(status, int) and 400 <= status < 600:
                detail = body.get("detail")
                return Problem(
                    status if status in (503, 504) or status < 500 else 502,
                    detail if isinstance(detail, str) else None,
                )
        return self.unreadable()

    @property
    def is_problem(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("application/problem+json")

    @property
    def route_missing(self) -> bool:
        """A 404 or 405 that is not a problem document: the peer has no such route at all, as the
        seed's services, which answer an HTML page, have none of our extensions."""
        return self.status in (404, 405) and not self.is_problem

    def raise_for_problem(self) -> None:
        """Passes a downstream error on: 4xx, 503 and 504 as they are, any other 5xx as 502."""
        if self.status < 400:
            return
        detail = None
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            detail = self.json().get("detail")
        if self.status < 500 or self.status in (503, 504):
            headers = (
                {"Retry-After": self.headers["Retry-After"]}
                if "Retry-After" in self.headers
                else None
            )
            raise Problem(self.status, detail, headers=headers)
        raise Problem(502, f"{self.target} failed with status {self.status}.")


class HttpSession:
    """The process's one pooled client (pyreqwest: Rust's reqwest and hyper under asyncio, about
    half the CPU of aiohttp per call); opened at start-up, closed at shutdown."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, tracer: Tracer) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracer = tracer
        self._client: Client | None = None

    async def open(self) -> None:
        self._client = (
            ClientBuilder()
            .http1_only()
            .follow_redirects(False)
            .connect_timeout(timedelta(seconds=self.settings.connect_timeout))
            .pool_idle_timeout(timedelta(seconds=POOL_IDLE_SECONDS))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_SERVICE)
            .tcp_nodelay(True)
            .build()
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def pool(self) -> Client:
        if self._client is None:
            raise RuntimeError("HttpSession.open() was not called")
        return self._client

    def client(self, target: str, base_url: HttpUrl | str) -> "ServiceClient":
        return ServiceClient(self, target, str(base_url).rstrip("/"))


class ServiceClient:
    """Talks to one other service, by name (for errors and metrics) and base URL."""

    def __init__(self, http: HttpSession, target: str, base_url: str) -> None:
        self.http = http
        self.target = target
        self.base_url = base_url
        settings = http.settings
        self.timeout = settings.request_timeout
        self.retries = settings.retries
        token = settings.internal_token
        self.default_headers = (
            {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> DownstreamResponse:
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        call_headers = {**self.default_headers, **(headers or {})}
        request_id = request_id_var.get()
        if request_id:
            call_headers["X-Request-ID"] = request_id
        body = None if json is None else orjson.dumps(json)
        if body is not None:
            call_headers["Content-Type"] = "application/json"
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        attempts = 1 + (self.retries if idempotent else 0)
        with self.http.tracer.span(f"{method} {self.target}", current_span.get(), "client") as span:
            call_headers["traceparent"] = span.traceparent
            return await self._send(
                method, url, body, call_headers, timeout or self.timeout, attempts
            )

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        attempts: int,
    ) -> DownstreamResponse:
        metrics = self.http.metrics
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            builder = self.http.pool.request(method, url).headers(headers)
            if body is not None:
                builder = builder.body_bytes(body)
            try:
                # The deadline is asyncio's: pyreqwest reports its own request timeout as a
                # connect timeout, which would make a call that may have been served look unsent.
                async with asyncio.timeout(timeout):
                    response = await builder.build().send()
                    content = bytes(await response.bytes())
            except PoolTimeoutError:
                metrics.downstream_calls.labels(self.target, "unavailable").inc()
                raise DownstreamUnavailable(self.target) from None
            except TimeoutError as error:
                if not isinstance(error, ConnectTimeoutError):
                    metrics.downstream_calls.labels(self.target, "timeout").inc()
                    raise DownstreamTimeout(self.target, timeout) from None
                if self._last_attempt(attempt, attempts, method, url, error):
                    raise DownstreamUnavailable(self.target) from None
            except RequestError as error:
                if self._last_attempt(attempt, attempts, method, url, error):
                    raise DownstreamUnavailable(self.target) from None
            else:
                metrics.downstream_calls.labels(self.target, str(response.status)).inc()
                metrics.downstream_seconds.labels(self.target).observe(
                    time.perf_counter() - started
                )
                return DownstreamResponse(self.target, response.status, response.headers, content)
            await asyncio.sleep(RETRY_BACKOFF_SECONDS * attempt)

    def _last_attempt(
        self, attempt: int, attempts: int, method: str, url: str, error: Exception
    ) -> bool:
        """Counts a connection that failed before an answer; True when no attempt is left."""
        self.http.metrics.downstream_calls.labels(self.target, "unavailable").inc()
        if attempt < attempts:
            return False
        logger.warning("%s %s failed: %s", method, url, type(error).__name__)
        return True
