"""Prometheus metrics: one registry per app, so tests can build many apps in one process."""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    """The metrics every service exports; services add their business metrics to `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being answered now.", registry=self.registry
        )
        self.downstream_calls = Counter(
            "downstream_calls",
            "Calls to other services.",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.downstream_seconds = Histogram(
            "downstream_call_duration_seconds",
            "Time of calls to other services.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._call_series: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Counts one answered request; the labelled series are looked up once, then reused."""
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.request_seconds.labels(method, route),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_call(self, target: str, outcome: str, seconds: float | None) -> None:
        """Counts one call to another service (`seconds` when it was answered), as above."""
        key = (target, outcome)
        series = self._call_series.get(key)
        if series is None:
            series = (
                self.downstream_calls.labels(target, outcome),
                self.downstream_seconds.labels(target),
            )
            self._call_series[key] = series
        series[0].inc()
        if seconds is not None:
            series[1].observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
