"""Faults switched at run time on a real shop, through `microshop chaos` and `/admin/faults`: each
changes what clients see while it is on, and the shop recovers once it is cleared."""

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.shops import RunningShop, start_shop

ORDER = {"item": "kite", "price": 40, "customer": "Chaos Monkey"}
TOKEN = secrets.token_hex(32)

pytestmark = pytest.mark.integration


def chaos(
    shop: RunningShop, *arguments: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "200"}
    environment.pop("MICROSHOP_INTERNAL_TOKEN", None)
    environment.pop("MICROSHOP_SERVICE_TOKEN", None)
    if token is not None:
        environment["MICROSHOP_INTERNAL_TOKEN"] = token
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "microshop",
            "chaos",
            *arguments,
            "--base-port",
            str(shop.base_port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    """A shop whose order-service sweeps for pending orders twice a second."""
    running = start_shop(
        tmp_path_factory.mktemp("chaos"), environment={"MICROSHOP_SETTLE_INTERVAL": "0.5"}
    )
    yield running
    assert running.stop() == 0, running.output()[-4000:]


@pytest.fixture
def clean_shop(shop: RunningShop) -> Iterator[RunningShop]:
    """The module's shop, with every fault cleared after each test whatever it left on."""
    yield shop
    assert chaos(shop, "clear").returncode == 0


def place(shop: RunningShop, **headers: str) -> httpx.Response:
    return httpx.post(shop.gateway_url + "/orders", json=ORDER, headers=headers, timeout=30)


def wait_for_status(shop: RunningShop, order_id: int, wanted: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        order = httpx.get(f"{shop.gateway_url}/orders/{order_id}", timeout=10).json()["order"]
        if order["status"] == wanted:
            return
        assert time.monotonic() < deadline, f"order {order_id} stayed {order['status']}"
        time.sleep(0.25)


def test_failing_payments_leave_orders_pending_until_cleared(clean_shop: RunningShop) -> None:
    switched = chaos(clean_shop, "set", "payment-service", "--error-rate", "1")
    assert switched.returncode == 0, switched.stderr
    assert "100% answered 503" in switched.stdout

    pending = place(clean_shop)
    assert pending.status_code == 202, pending.text
    assert pending.json()["order"]["status"] == "pending"
    metrics = httpx.get(clean_shop.url("payment-service") + "/metrics").text
    assert "fault_error_rate 1.0" in metrics
    assert 'faults_injected_total{status="503"}' in metrics

    assert chaos(clean_shop, "clear", "payment-service").returncode == 0
    paid = place(clean_shop)
    assert paid.status_code == 201, paid.text
    wait_for_status(clean_shop, pending.json()["order"]["id"], "paid")
    assert "fault_error_rate 0.0" in httpx.get(clean_shop.url("payment-service") + "/metrics").text


def test_order_service_errors_reach_the_client_as_502_problems(clean_shop: RunningShop) -> None:
    switched = chaos(
        clean_shop, "set", "order-service", "--error-rate", "1", "--error-status", "500"
    )
    assert switched.returncode == 0, switched.stderr

    failed = place(clean_shop)
    assert failed.status_code == 502
    assert failed.headers["content-type"] == "application/problem+json"
    assert httpx.get(clean_shop.url("order-service") + "/readyz").status_code == 200

    assert chaos(clean_shop, "clear").returncode == 0
    assert place(clean_shop).status_code == 201


def test_latency_slows_requests_but_never_the_probes(clean_shop: RunningShop) -> None:
    assert chaos(clean_shop, "set", "api-gateway", "--latency", "0.6").returncode == 0

    started = time.monotonic()
    assert httpx.get(clean_shop.gateway_url + "/orders", timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    assert httpx.get(clean_shop.gateway_url + "/readyz", timeout=10).status_code == 200
    assert time.monotonic() - started < 0.5

    assert chaos(clean_shop, "clear", "gateway").returncode == 0
    started = time.monotonic()
    assert httpx.get(clean_shop.gateway_url + "/orders", timeout=10).status_code == 200
    assert time.monotonic() - started < 0.5


def test_stalled_storage_times_out_orders_that_still_complete(clean_shop: RunningShop) -> None:
    switched = chaos(clean_shop, "scenario", "db-stall")
    assert switched.returncode == 0, switched.stderr
    assert "5 s slower storage" in switched.stdout

    timed_out = place(clean_shop, **{"Idempotency-Key": "chaos-stalled-order"})
    assert timed_out.status_code == 504
    assert timed_out.headers["Idempotency-Key"] == "chaos-stalled-order"
    status = httpx.get(clean_shop.gateway_url + "/status", timeout=10).json()["services"]
    db = next(service for service in status if service["service"] == "db")
    assert db["state"] == "down"

    assert chaos(clean_shop, "clear", "db").returncode == 0
    retried = place(clean_shop, **{"Idempotency-Key": "chaos-stalled-order"})
    assert retried.status_code in (201, 202), retried.text
    listed = httpx.get(
        clean_shop.gateway_url + "/orders", params={"customer": ORDER["customer"]}, timeout=10
    ).json()
    assert [order["id"] for order in listed].count(retried.json()["order"]["id"]) == 1


def test_status_and_show_report_the_faults_that_are_on(clean_shop: RunningShop) -> None:
    switched = chaos(clean_shop, "scenario", "payment-flaky")
    assert switched.returncode == 0, switched.stderr

    services = httpx.get(clean_shop.gateway_url + "/status", timeout=10).json()["services"]
    faults = {service["service"]: service["faults"] for service in services}
    assert faults["payment-service"]["error_rate"] == 0.5
    assert [name for name, on in faults.items() if on] == ["payment-service"]
    shown = chaos(clean_shop, "show", "payment-service")
    assert "50% answered 503" in shown.stdout


def test_bad_faults_are_refused_and_change_nothing(clean_shop: RunningShop) -> None:
    not_db = chaos(clean_shop, "set", "order-service", "--storage-latency", "1")
    assert not_db.returncode == 1
    assert "only db has" in not_db.stderr
    out_of_range = httpx.put(
        clean_shop.url("payment-service") + "/admin/faults", json={"error_rate": 2}
    )
    assert out_of_range.status_code == 422
    assert out_of_range.headers["content-type"] == "application/problem+json"
    unknown = httpx.put(clean_shop.gateway_url + "/admin/faults", json={"explode": True})
    assert unknown.status_code == 422
    assert chaos(clean_shop, "scenario", "no-such-scenario").returncode == 2
    assert "none" in chaos(clean_shop, "show").stdout
    assert "faults" not in httpx.get(clean_shop.url("order-service") + "/readyz").json()


@pytest.fixture(scope="module")
def guarded_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    running = start_shop(
        tmp_path_factory.mktemp("guarded-chaos"), environment={"MICROSHOP_INTERNAL_TOKEN": TOKEN}
    )
    yield running
    assert running.stop() == 0, running.output()[-4000:]


@pytest.mark.parametrize("service", ["api-gateway", "order-service", "payment-service", "db"])
def test_with_a_token_every_admin_endpoint_refuses_callers_without_it(
    guarded_shop: RunningShop, service: str
) -> None:
    url = guarded_shop.url(service) + "/admin/faults"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        refused = httpx.put(url, json={"error_rate": 1}, headers=headers)
        assert refused.status_code == 401, (service, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).json()["error_rate"] == 0
    assert place(guarded_shop).status_code == 201


def test_with_a_token_the_command_line_sends_it(guarded_shop: RunningShop) -> None:
    without = chaos(guarded_shop, "show", "db")
    assert without.returncode == 1
    assert "401" in without.stderr
    switched = chaos(guarded_shop, "set", "db", "--latency", "0.01", token=TOKEN)
    assert switched.returncode == 0, switched.stderr
    assert chaos(guarded_shop, "clear", token=TOKEN).returncode == 0
