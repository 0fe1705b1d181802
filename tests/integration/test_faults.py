"""Faults with real processes: nothing acknowledged is lost or charged twice, nothing hangs."""

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from microshop.ports import free_port
from tests.integration.load import OrderStream, all_pages, wait_until_settled
from tests.shops import RunningShop, start_service, start_shop

FAST_SETTLEMENT = {"MICROSHOP_SETTLE_INTERVAL": "0.5"}
ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}


def assert_every_order_settled_once(shop: RunningShop, stream: OrderStream) -> None:
    orders = wait_until_settled(shop.gateway_url, stream.customer)
    listed = {order["id"]: order for order in orders}
    transactions = all_pages(shop.url("payment-service") + "/transactions", {})
    per_order = Counter(transaction["orderId"] for transaction in transactions)

    assert stream.acknowledged_ids, "the stream placed no order"
    assert stream.acknowledged_ids <= listed.keys(), "an acknowledged order was lost"
    for order_id, order in listed.items():  # acknowledged or answered 5xx, but stored
        assert order["status"] in ("paid", "declined"), order
        assert per_order[order_id] == 1, f"order {order_id} has {per_order[order_id]} transactions"
    assert not [outcome for outcome in stream.outcomes if outcome.error], "a client got no answer"


async def kill_during_stream(shop: RunningShop, service: str) -> OrderStream:
    stream = OrderStream(shop.gateway_url, f"faults-{uuid.uuid4().hex[:8]}")
    load = asyncio.create_task(stream.run(seconds=6))
    await asyncio.sleep(1.5)
    os.kill(shop.pid(service), signal.SIGKILL)
    await load
    return stream


@pytest.mark.parametrize("service", ["payment-service", "db"])
async def test_killed_service_loses_no_acknowledged_order_and_charges_none_twice(
    tmp_path: Path, service: str
) -> None:
    shop = start_shop(tmp_path, environment=FAST_SETTLEMENT)
    try:
        stream = await kill_during_stream(shop, service)
        await asyncio.to_thread(shop.wait_ready, service)
        statuses = Counter(outcome.status for outcome in stream.outcomes)
        assert statuses[201] > 0, statuses
        assert set(statuses) <= {201, 202, 503, 504}, statuses
        await asyncio.to_thread(assert_every_order_settled_once, shop, stream)
    finally:
        assert shop.stop() == 0


def test_slow_payment_still_gets_an_answer_in_time_and_settles_later(tmp_path: Path) -> None:
    shop = start_shop(
        tmp_path, environment={"MICROSHOP_PAYMENT_FAULT_LATENCY": "3", **FAST_SETTLEMENT}
    )
    try:
        started = time.monotonic()
        response = httpx.post(shop.gateway_url + "/orders", json=ORDER, timeout=30)
        elapsed = time.monotonic() - started

        assert response.status_code == 202
        assert response.json()["order"]["status"] == "pending"
        assert response.json()["transaction"] is None
        assert elapsed < 5
        order_url = f"{shop.gateway_url}/orders/{response.json()['order']['id']}"
        deadline = time.monotonic() + 30
        while httpx.get(order_url).json()["order"]["status"] == "pending":
            assert time.monotonic() < deadline, "a slow payment was never settled"
            time.sleep(0.5)
        assert httpx.get(order_url).json()["transaction"]["success"] is True
    finally:
        assert shop.stop() == 0


def test_gateway_answers_503_with_retry_after_when_order_service_is_down(tmp_path: Path) -> None:
    gateway = start_service(
        "api-gateway", tmp_path, {"MICROSHOP_ORDER_SERVICE_URL": f"http://127.0.0.1:{free_port()}"}
    )
    try:
        started = time.monotonic()
        response = httpx.post(gateway.url + "/orders", json=ORDER, timeout=30)
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/problem+json"
        assert httpx.get(gateway.url + "/readyz").status_code == 200  # it still answers, so ready
    finally:
        assert gateway.stop() == 0


def test_gateway_answers_504_when_order_service_hangs(
    shop_with_stopped_orders: RunningShop,
) -> None:
    started = time.monotonic()
    response = httpx.get(shop_with_stopped_orders.gateway_url + "/orders", timeout=30)
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert time.monotonic() - started < 5


@pytest.fixture
def shop_with_stopped_orders(tmp_path: Path):  # type: ignore[no-untyped-def]
    shop = start_shop(tmp_path)
    order_service = shop.pid("order-service")
    os.kill(order_service, signal.SIGSTOP)
    try:
        yield shop
    finally:
        os.kill(order_service, signal.SIGCONT)
        assert shop.stop() == 0


def test_two_order_services_settle_one_backlog_without_double_charges(tmp_path: Path) -> None:
    db = start_service("db", tmp_path, {})
    payment_port = free_port()
    wiring = {
        "MICROSHOP_DB_SERVICE_URL": db.url,
        "MICROSHOP_PAYMENT_SERVICE_URL": f"http://127.0.0.1:{payment_port}",
        **FAST_SETTLEMENT,
    }
    first = start_service("order-service", tmp_path, wiring)
    started = [db, first]
    try:
        backlog = [
            httpx.post(first.url + "/orders", json={**ORDER, "price": price}, timeout=10)
            for price in (100, 20_000) * 50
        ]
        assert {response.status_code for response in backlog} == {202}

        second = start_service("order-service", tmp_path, wiring)
        started.append(second)
        started.append(
            start_service(
                "payment-service", tmp_path, {"MICROSHOP_DB_SERVICE_URL": db.url}, port=payment_port
            )
        )

        deadline = time.monotonic() + 60
        while any(order["status"] == "pending" for order in all_pages(db.url + "/orders", {})):
            assert time.monotonic() < deadline, "the backlog was not settled"
            time.sleep(0.5)
        transactions = all_pages(db.url + "/transactions", {})
        orders = all_pages(db.url + "/orders", {})
        assert sorted(transaction["orderId"] for transaction in transactions) == sorted(
            order["id"] for order in orders
        )
        assert Counter(order["status"] for order in orders) == {"paid": 50, "declined": 50}
        assert "settled" in first.output() + second.output()
    finally:
        for service in reversed(started):
            service.stop()


@pytest.mark.parametrize("service", ["db", "payment-service", "order-service", "api-gateway"])
async def test_sigterm_during_load_resets_no_connection(tmp_path: Path, service: str) -> None:
    shop = start_shop(tmp_path, environment={"MICROSHOP_DRAIN_SECONDS": "1", **FAST_SETTLEMENT})
    try:
        stream = OrderStream(shop.gateway_url, f"sigterm-{uuid.uuid4().hex[:8]}")
        load = asyncio.create_task(stream.run(seconds=5))
        await asyncio.sleep(1)
        os.kill(shop.pid(service), signal.SIGTERM)
        if service == "api-gateway":
            # The clients reach the gateway directly, with no load balancer in between: do what
            # one does, and stop sending new requests once the gateway reports not-ready.
            await stop_when_not_ready(shop.gateway_url, stream)
        await load

        errors = Counter(outcome.error for outcome in stream.outcomes if outcome.error)
        assert not errors, errors
        await asyncio.to_thread(wait_for_output, shop, f"{service:<15} | exited with code 0")
        await asyncio.to_thread(shop.wait_ready, service)
        await asyncio.to_thread(assert_every_order_settled_once_or_refused, shop, stream)
    finally:
        assert shop.stop() == 0


def wait_for_output(shop: RunningShop, line: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while line not in shop.output():
        assert time.monotonic() < deadline, f"never printed: {line}"
        time.sleep(0.1)


async def stop_when_not_ready(url: str, stream: OrderStream) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (await client.get(url + "/readyz")).status_code == 503:
                break
            await asyncio.sleep(0.02)
    stream.stopped.set()


def assert_every_order_settled_once_or_refused(shop: RunningShop, stream: OrderStream) -> None:
    orders = wait_until_settled(shop.gateway_url, stream.customer)
    assert stream.acknowledged_ids <= {order["id"] for order in orders}
    assert all(order["status"] in ("paid", "declined") for order in orders)


def test_a_timed_out_order_says_how_to_retry_it_and_the_retry_places_it_once(
    tmp_path: Path,
) -> None:
    """With db frozen, the order times out but may still be stored once db resumes; the 504 hands
    a client that sent no key the one that was used, and retrying with it places nothing twice."""
    shop = start_shop(tmp_path)
    db = shop.pid("db")
    customer = f"frozen-{time.monotonic_ns()}"
    try:
        os.kill(db, signal.SIGSTOP)
        try:
            timed_out = httpx.post(
                shop.gateway_url + "/orders", json={**ORDER, "customer": customer}, timeout=30
            )
        finally:
            os.kill(db, signal.SIGCONT)
        assert timed_out.status_code == 504, timed_out.text
        key = timed_out.headers["idempotency-key"]
        assert key in timed_out.json()["detail"]
        assert "may still be placed" in timed_out.json()["detail"]

        retried = httpx.post(
            shop.gateway_url + "/orders",
            json={**ORDER, "customer": customer},
            headers={"Idempotency-Key": key},
            timeout=30,
        )
        assert retried.status_code in (200, 201, 202), retried.text
        assert retried.headers["idempotency-key"] == key
        listed = httpx.get(shop.gateway_url + "/orders", params={"customer": customer}).json()
        assert [order["id"] for order in listed] == [retried.json()["order"]["id"]]
    finally:
        assert shop.stop() == 0
