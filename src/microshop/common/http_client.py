"""Calls between services: one pooled keep-alive session, a timeout on every call, bounded retries.

Only calls that are safe to repeat are retried (GET, or a POST the caller marks idempotent
because it carries an idempotency key), and only when the connection failed before an answer.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import BaseModel, HttpUrl, TypeAdapter, ValidationError

from microshop.common.errors import Problem
from microshop.common.logs import request_id_var
from microshop.common.metrics import ServiceMetrics
from microshop.common.settings import Settings
from microshop.common.tracing import Tracer, current_span

logger = logging.getLogger("microshop.http_client")

RETRY_BACKOFF_SECONDS = 0.05
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
    headers: CIMultiDictProxy[str]
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
    """The process's single aiohttp session; opened at start-up, closed at shutdown."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, tracer: Tracer) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracer = tracer
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # The threaded resolver, even where aiodns is installed: its pycares thread costs CPU
        # in every process, and kube-dns names resolve fine through the system resolver.
        connector = aiohttp.TCPConnector(
            limit=256, keepalive_timeout=30, ttl_dns_cache=10, resolver=aiohttp.ThreadedResolver()
        )
        self._session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda value: orjson.dumps(value).decode()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpSession.open() was not called")
        return self._session

    def client(self, target: str, base_url: HttpUrl | str) -> "ServiceClient":
        return ServiceClient(self, target, str(base_url).rstrip("/"))


class ServiceClient:
    """Talks to one other service, by name (for errors and metrics) and base URL."""

    def __init__(self, http: HttpSession, target: str, base_url: str) -> None:
        self.http = http
        self.target = target
        self.base_url = base_url
        settings = http.settings
        self.timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout, sock_connect=settings.connect_timeout
        )
        self.retries = settings.retries
        # This service's own identity when it has one, else the token all services share.
        token = settings.service_token or settings.internal_token
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
        call_timeout = self.timeout
        if timeout is not None:
            call_timeout = aiohttp.ClientTimeout(
                total=timeout, sock_connect=self.timeout.sock_connect
            )
        data = None if json is None else orjson.dumps(json)
        if data is not None:
            call_headers["Content-Type"] = "application/json"
        attempts = 1 + (self.retries if idempotent else 0)
        span_name = f"{method} {self.target}"
        with self.http.tracer.span(span_name, current_span.get(), "client") as span:
            call_headers["traceparent"] = span.traceparent
            return await self.send(method, path, data, params, call_headers, call_timeout, attempts)

    async def send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
        attempts: int,
    ) -> DownstreamResponse:
        metrics = self.http.metrics
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.http.session.request(
                    method,
                    self.base_url + path,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=timeout,
                ) as response:
                    body = await response.read()
                metrics.observe_call(
                    self.target, str(response.status), time.perf_counter() - started
                )
                return DownstreamResponse(self.target, response.status, response.headers, body)
            except (aiohttp.ClientError, aiohttp.ConnectionTimeoutError) as error:
                metrics.observe_call(self.target, "unavailable", None)
                if attempt == attempts:
                    logger.warning("%s %s%s failed: %r", method, self.target, path, error)
                    raise DownstreamUnavailable(self.target) from None
                await asyncio.sleep(RETRY_BACKOFF_SECONDS * attempt)
            except TimeoutError:
                metrics.observe_call(self.target, "timeout", None)
                raise DownstreamTimeout(self.target, timeout.total or 0) from None
