"""Logs, traces and metrics after real requests through the four real processes."""

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.shops import RunningShop, start_service

ORDER = {"item": "t-shirt", "price": 100, "customer": "Tracy"}
SERVICES = ("api-gateway", "order-service", "payment-service", "db")


def log_entries(shop: RunningShop) -> list[dict[str, object]]:
    entries = []
    for line in shop.output().splitlines():
        service, _, text = line.partition(" | ")
        if text.startswith("{"):
            entries.append(json.loads(text) | {"process": service.strip()})
    return entries


def test_one_order_can_be_followed_through_all_four_services(shop: RunningShop) -> None:
    request_id = f"follow-{uuid.uuid4().hex}"
    trace_id = uuid.uuid4().hex
    response = httpx.post(
        shop.gateway_url + "/orders",
        json=ORDER,
        headers={"X-Request-ID": request_id, "traceparent": f"00-{trace_id}-{'ab' * 8}-01"},
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == request_id
    assert response.headers["traceparent"].split("-")[1] == trace_id

    deadline = time.monotonic() + 5
    while True:
        lines = [entry for entry in log_entries(shop) if entry["request_id"] == request_id]
        if {entry["service"] for entry in lines} == set(SERVICES) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {entry["service"] for entry in lines} == set(SERVICES)
    for entry in lines:
        assert entry["trace_id"] == trace_id
        assert entry["service"] == entry["process"]
        assert {"time", "level", "method", "path", "status", "duration_ms"} <= entry.keys()
    access = {
        (entry["service"], entry["method"], entry["path"], entry["status"]) for entry in lines
    }
    assert ("db", "POST", "/transactions", 201) in access
    assert ("payment-service", "POST", "/transactions", 201) in access


def test_a_request_without_trace_context_starts_a_new_trace(shop: RunningShop) -> None:
    first = httpx.get(shop.gateway_url + "/orders").headers["traceparent"]
    second = httpx.get(shop.gateway_url + "/orders").headers["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first)
    assert first.split("-")[1] != second.split("-")[1]


def metric(shop: RunningShop, service: str, name: str, **labels: str) -> float:
    text = httpx.get(shop.url(service) + "/metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            found = line[line.find("{") + 1 : line.find("}")] if "{" in line else ""
            if ",".join(sorted(found.split(","))) == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_real_requests(shop: RunningShop) -> None:
    route = {"method": "POST", "route": "/orders"}
    before = {
        "created": metric(shop, "api-gateway", "http_requests_total", **route, status="201"),
        "invalid": metric(shop, "api-gateway", "http_requests_total", **route, status="422"),
        "latency": metric(shop, "api-gateway", "http_request_duration_seconds_count", **route),
        "paid": metric(shop, "order-service", "orders_placed_total", status="paid"),
        "declined": metric(shop, "payment-service", "payments_total", result="declined"),
        "calls": metric(
            shop, "api-gateway", "downstream_calls_total", target="order-service", outcome="201"
        ),
    }
    for _ in range(3):
        httpx.post(shop.gateway_url + "/orders", json=ORDER)
    httpx.post(shop.gateway_url + "/orders", json={**ORDER, "price": 20_000})
    httpx.post(shop.gateway_url + "/orders", json={**ORDER, "price": -1})

    assert metric(shop, "api-gateway", "http_requests_total", **route, status="201") == (
        before["created"] + 4
    )
    assert metric(shop, "api-gateway", "http_requests_total", **route, status="422") == (
        before["invalid"] + 1
    )
    assert metric(shop, "api-gateway", "http_request_duration_seconds_count", **route) == (
        before["latency"] + 5
    )
    assert metric(shop, "order-service", "orders_placed_total", status="paid") == before["paid"] + 3
    assert metric(shop, "payment-service", "payments_total", result="declined") == (
        before["declined"] + 1
    )
    assert (
        metric(shop, "api-gateway", "downstream_calls_total", target="order-service", outcome="201")
        == before["calls"] + 4
    )
    assert metric(shop, "order-service", "orders_awaiting_settlement") == 0


class Collector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector that keeps what it receives."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *arguments: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_spans_are_exported_over_otlp_when_configured(tmp_path: Path, collector: str) -> None:
    db = start_service("db", tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector})
    trace_id = uuid.uuid4().hex
    httpx.get(db.url + "/orders", headers={"traceparent": f"00-{trace_id}-{'cd' * 8}-01"})
    assert db.stop() == 0

    exported = b"".join(body for path, body in Collector.received if path == "/v1/traces")
    assert b"GET /orders" in exported
    assert bytes.fromhex(trace_id) in exported
    assert b"db" in exported


def test_without_an_endpoint_opentelemetry_is_never_imported() -> None:
    program = (
        "import sys; from microshop.common.settings import Settings;"
        "from microshop.services.db.app import create; create(Settings());"
        "print(any(name.startswith('opentelemetry') for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
