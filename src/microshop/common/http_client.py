"""Calls between services: one pooled keep-alive session, a timeout on every call, bounded retries.

Only calls that are safe to repeat are retried (GET, or a POST the caller marks idempotent
because it carries an idempotency key), and only when a call got no answer (a refused, dropped or
broken connection); a call that ran out of time is a 504, never repeated.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, HttpUrl, TypeAdapter, ValidationError
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectTimeoutError, RequestError, RequestTimeoutError

from microshop import __version__
from microshop.common.errors import Problem
from microshop.common.logs import request_id_var
from microshop.common.metrics import ServiceMetrics
from microshop.common.settings import Settings
from microshop.common.tracing import Tracer, current_span

logger = logging.getLogger("microshop.http_client")

RETRY_BACKOFF_SECONDS = 0.05
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_CONNECTIONS = 256
POOL_IDLE_SECONDS = 4.0
_CLOCK_TOLERANCE = 0.002
"""Seconds by which a deadline pyreqwest saw pass may look early to us: its timer starts after
ours and fires on whole milliseconds."""

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


@dataclass(slots=True)
class DownstreamResponse:
    target: str
    status: int
    headers: Mapping[str, str]
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
    """The process's single pooled client; opened at start-up, closed at shutdown.

    pyreqwest (Rust's reqwest and hyper, driven from asyncio) makes the calls: it costs about
    half of aiohttp's CPU per call (docs/performance.md), and calls between services are most of
    what a service does. A call that ran out of time is always told apart from one that never
    reached its peer (`ServiceClient.send`).
    """

    def __init__(self, settings: Settings, metrics: ServiceMetrics, tracer: Tracer) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracer = tracer
        self._client: Client | None = None

    async def open(self) -> None:
        builder = (
            ClientBuilder()
            .http1_only()
            .max_connections(MAX_CONNECTIONS)
            .connect_timeout(timedelta(seconds=self.settings.connect_timeout))
            # Below the servers' keep-alive (uvicorn's and Node's 5 s): an idle connection is
            # dropped here before its server closes it under a request.
            .pool_idle_timeout(timedelta(seconds=POOL_IDLE_SECONDS))
            # The shop's answers are small and never compressed: no Accept-Encoding to send,
            # nor a decompressing layer on every answer.
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .user_agent(f"microshop/{__version__}")
        )
        # This service's own identity when it has one, else the token all services share.
        token = self.settings.service_token or self.settings.internal_token
        if token is not None:
            builder = builder.default_headers(
                {"Authorization": f"Bearer {token.get_secret_value()}"}
            )
        self._client = builder.build()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client_pool(self) -> Client:
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
        self._span_names = {method: f"{method} {target}" for method in ("GET", "POST")}

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
        call_headers = {} if headers is None else dict(headers)
        request_id = request_id_var.get()
        if request_id:
            call_headers["X-Request-ID"] = request_id
        data = None if json is None else orjson.dumps(json)
        if data is not None:
            call_headers["Content-Type"] = "application/json"
        attempts = 1 + (self.retries if idempotent else 0)
        span_name = self._span_names.get(method) or f"{method} {self.target}"
        with self.http.tracer.span(span_name, current_span.get(), "client") as span:
            call_headers["traceparent"] = span.traceparent
            return await self.send(
                method, path, data, params, call_headers, timeout or self.timeout, attempts
            )

    async def send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str],
        timeout: float,
        attempts: int,
    ) -> DownstreamResponse:
        """Makes the call, again after a failure that left the peer untouched, up to `attempts`.

        The deadline is pyreqwest's own, kept by its Rust runtime: an `asyncio.timeout` around
        each call cost about an eighth of the call (docs/performance.md). pyreqwest reports a
        deadline that passes while the answer is awaited as a connect timeout, so a connect
        timeout is taken for a connection never made only when it came before the deadline: a
        call whose deadline passed may have reached its peer.
        """
        metrics = self.http.metrics
        deadline = timedelta(seconds=timeout)
        url = self.base_url + path
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = time.perf_counter()
            request = self.http.client_pool.request(method, url).timeout(deadline).headers(headers)
            if params:
                request = request.query(params)
            if data is not None:
                request = request.body_bytes(data)
            try:
                response = await request.build().send()
                body = bytes(await response.bytes())
            except RequestError as error:
                if _ran_out_of_time(error, time.perf_counter() - attempt_started, timeout):
                    metrics.observe_call(self.target, "timeout", None)
                    raise DownstreamTimeout(self.target, timeout) from None
                metrics.observe_call(self.target, "unavailable", None)
                if attempt == attempts:
                    logger.warning("%s %s%s failed: %s", method, self.target, path, error.message)
                    raise DownstreamUnavailable(self.target) from None
                await asyncio.sleep(RETRY_BACKOFF_SECONDS * attempt)
                continue
            metrics.observe_call(self.target, str(response.status), time.perf_counter() - started)
            return DownstreamResponse(self.target, response.status, response.headers, body)


def _ran_out_of_time(error: RequestError, elapsed: float, timeout: float) -> bool:
    """Whether a failed call ended at its deadline: it may have reached its peer, so it is a
    504 and never repeated; any other failure left the peer untouched."""
    if not isinstance(error, RequestTimeoutError):
        return False
    return not isinstance(error, ConnectTimeoutError) or elapsed >= timeout - _CLOCK_TOLERANCE
