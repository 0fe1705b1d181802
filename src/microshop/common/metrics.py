"""Prometheus metrics: one registry per app, so tests can build many apps in one process.

Every request and every call to another service is counted, so those counts are kept the
cheapest way Python has: plain numbers in dicts, changed only on the event loop's thread, and
turned into Prometheus families when `/metrics` is read. prometheus_client's own metric objects
take a lock and check their labels on every change, which cost several microseconds per request
(docs/performance.md); they stay for the services' business metrics, which change once per
order.
"""

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BUCKET_NAMES = [str(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]


class _Durations:
    """One series of a latency histogram: how many observations fell in each bucket, and their
    sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus has them: each counts every observation up to its bound."""
        total = 0
        buckets = []
        for name, count in zip(_BUCKET_NAMES, self.counts, strict=True):
            total += count
            buckets.append((name, float(total)))
        return buckets


class ServiceMetrics(Collector):
    """The metrics every service exports; services add their business metrics to `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.in_flight = 0
        """Requests being answered now."""
        self._requests: dict[tuple[str, str, int], int] = {}
        self._request_seconds: dict[tuple[str, str], _Durations] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._call_seconds: dict[str, _Durations] = {}
        self.registry.register(self)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Counts one answered request."""
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        durations = self._request_seconds.get((method, route))
        if durations is None:
            durations = self._request_seconds[method, route] = _Durations()
        durations.observe(seconds)

    def observe_call(self, target: str, outcome: str, seconds: float | None) -> None:
        """Counts one call to another service (`seconds` when it was answered)."""
        key = (target, outcome)
        self._calls[key] = self._calls.get(key, 0) + 1
        durations = self._call_seconds.get(target)
        if durations is None:  # exported from the first call on, answered or not
            durations = self._call_seconds[target] = _Durations()
        if seconds is not None:
            durations.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests served.", labels=["method", "route", "status"]
        )
        for (method, route, status), count in self._requests.items():
            requests.add_metric([method, route, str(status)], count)
        yield requests
        request_seconds = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels=["method", "route"],
        )
        for labels, durations in self._request_seconds.items():
            request_seconds.add_metric(list(labels), durations.cumulative(), durations.sum)
        yield request_seconds
        yield GaugeMetricFamily(
            "http_requests_in_flight", "HTTP requests being answered now.", value=self.in_flight
        )
        calls = CounterMetricFamily(
            "downstream_calls", "Calls to other services.", labels=["target", "outcome"]
        )
        for (target, outcome), count in self._calls.items():
            calls.add_metric([target, outcome], count)
        yield calls
        call_seconds = HistogramMetricFamily(
            "downstream_call_duration_seconds",
            "Time of calls to other services.",
            labels=["target"],
        )
        for target, durations in self._call_seconds.items():
            call_seconds.add_metric([target], durations.cumulative(), durations.sum)
        yield call_seconds

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
