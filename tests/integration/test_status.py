"""`GET /status`: the gateway's report on the four services, which must answer even when they don't.

`microshop up` restarts a service that dies, so a service is frozen with SIGSTOP instead: it
keeps its port but answers nothing, until SIGCONT.
"""

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from microshop import __version__
from microshop.common.settings import Settings
from microshop.ports import free_port
from microshop.services.gateway.app import create
from microshop.services.gateway.storefront import PROBE_TIMEOUT_SECONDS
from tests.shops import RunningShop

pytestmark = pytest.mark.timeout(120)

SERVICES = ["api-gateway", "order-service", "payment-service", "db"]
BOUND_SECONDS = PROBE_TIMEOUT_SECONDS + 1.0
"""How long /status may take at worst: one probe timeout (they run at once), and some slack."""


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {service["service"]: service for service in report["services"]}


@contextmanager
def frozen(shop: RunningShop, service: str) -> Iterator[None]:
    pid = shop.pid(service)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
    shop.wait_ready(service)


def test_all_four_services_are_reported_up(gateway: httpx.Client) -> None:
    response = gateway.get("/status")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    services = response.json()["services"]
    assert [service["service"] for service in services] == SERVICES
    for service in services:
        assert service["state"] == "up"
        assert service["version"] == __version__
        assert 0 <= service["latency_ms"] < PROBE_TIMEOUT_SECONDS * 1000
        assert service["error"] is None


def test_status_is_described_in_the_openapi_document(gateway: httpx.Client) -> None:
    spec = gateway.get("/openapi.json").json()

    answer = spec["paths"]["/status"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ShopStatus"
    }
    assert "ServiceHealth" in spec["components"]["schemas"]


def test_a_service_that_stops_answering_is_reported_down_in_time(
    shop: RunningShop, gateway: httpx.Client
) -> None:
    with frozen(shop, "payment-service"):
        started = time.monotonic()
        response = gateway.get("/status")
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    services = by_name(response.json())
    payment = services.pop("payment-service")
    assert payment["state"] == "down"
    assert payment["version"] is None
    assert payment["error"] == f"payment-service did not answer within {PROBE_TIMEOUT_SECONDS:g} s."
    assert [service["state"] for service in services.values()] == ["up", "up", "up"]
    assert elapsed < BOUND_SECONDS
    assert by_name(gateway.get("/status").json())["payment-service"]["state"] == "up"


def test_a_stopped_db_is_the_only_service_reported_down(
    shop: RunningShop, gateway: httpx.Client
) -> None:
    """Each service reports its own readiness: those that call db are up, db is down."""
    with frozen(shop, "db"):
        services = by_name(gateway.get("/status").json())

    assert services.pop("db")["state"] == "down"
    assert [service["state"] for service in services.values()] == ["up", "up", "up"]


def test_status_answers_in_time_when_no_service_does() -> None:
    """In process: one service refuses connections, two accept them and never answer."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = Settings(
            order_service_url=silent_url,  # type: ignore[arg-type]
            payment_service_url=f"http://127.0.0.1:{free_port()}",  # type: ignore[arg-type]
            db_service_url=silent_url,  # type: ignore[arg-type]
        )
        with TestClient(create(settings)) as client:
            started = time.monotonic()
            response = client.get("/status")
            elapsed = time.monotonic() - started

    assert response.status_code == 200
    services = by_name(response.json())
    assert services.pop("api-gateway")["state"] == "up"  # its own readiness needs nobody
    assert {service["state"] for service in services.values()} == {"down"}
    assert (
        services["payment-service"]["error"] == "payment-service is unavailable; try again shortly."
    )
    assert services["db"]["error"] == f"db did not answer within {PROBE_TIMEOUT_SECONDS:g} s."
    # The probes run at once: one after the other they would take three timeouts.
    assert elapsed < BOUND_SECONDS
