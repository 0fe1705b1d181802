"""The shop on PostgreSQL: end to end, with two db replicas, and through a database restart."""

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from tests.integration.load import all_pages
from tests.postgres import PostgresServer
from tests.round_robin import RoundRobin
from tests.shops import ServiceProcess, start_service, start_shop

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}


def test_up_with_a_postgresql_database(tmp_path: Path, postgres: PostgresServer) -> None:
    shop = start_shop(tmp_path, "--database", postgres.create_database())
    try:
        placed = httpx.post(shop.gateway_url + "/orders", json=ORDER, timeout=10)
        declined = httpx.post(
            shop.gateway_url + "/orders", json={**ORDER, "price": 10_001}, timeout=10
        )
        assert placed.status_code == declined.status_code == 201
        listed = httpx.get(shop.gateway_url + "/orders", timeout=10).json()
        assert [order["status"] for order in listed] == ["paid", "declined"]
        assert "microshop.sqlite3" not in {path.name for path in tmp_path.rglob("*")}
    finally:
        assert shop.stop() == 0


async def test_two_db_replicas_behind_round_robin_stay_consistent(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    database = {"MICROSHOP_DATABASE_URL": postgres.create_database()}
    replicas = [start_service("db", tmp_path, database) for _ in range(2)]
    started: list[ServiceProcess] = list(replicas)
    try:
        with RoundRobin([replica.port for replica in replicas]) as balancer:
            db_url = {"MICROSHOP_DB_SERVICE_URL": f"http://127.0.0.1:{balancer.port}"}
            payments = start_service("payment-service", tmp_path, db_url)
            started.append(payments)
            orders = start_service(
                "order-service",
                tmp_path,
                {**db_url, "MICROSHOP_PAYMENT_SERVICE_URL": payments.url},
            )
            started.append(orders)

            keys = [uuid.uuid4().hex for _ in range(100)]
            async with httpx.AsyncClient(base_url=orders.url, timeout=30) as client:
                # Each key is sent twice at the same time: the replicas must agree on one order.
                answers = await asyncio.gather(
                    *(
                        client.post("/orders", json=ORDER, headers={"Idempotency-Key": key})
                        for key in keys + keys
                    )
                )
            assert {answer.status_code for answer in answers} == {201}
            by_key: dict[str, set[int]] = {}
            for key, answer in zip(keys + keys, answers, strict=True):
                by_key.setdefault(key, set()).add(answer.json()["order"]["id"])
            assert all(len(ids) == 1 for ids in by_key.values())

            stored = all_pages(orders.url + "/orders", {})
            transactions = all_pages(payments.url + "/transactions", {})
            assert len(stored) == 100
            assert len({order["id"] for order in stored}) == 100
            assert Counter(t["orderId"] for t in transactions) == Counter(
                {order["id"]: 1 for order in stored}
            )
            assert all(count > 0 for count in balancer.connections.values())
            assert len(balancer.connections) == 2
    finally:
        for service in reversed(started):
            service.stop()


def test_db_answers_503_while_postgresql_restarts_then_recovers(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    db = start_service("db", tmp_path, {"MICROSHOP_DATABASE_URL": postgres.create_database()})
    try:
        assert httpx.post(db.url + "/orders", json=ORDER, timeout=10).status_code == 201
        postgres.stop()
        try:
            for request in (
                lambda: httpx.post(db.url + "/orders", json=ORDER, timeout=30),
                lambda: httpx.get(db.url + "/orders", timeout=30),
                lambda: httpx.get(db.url + "/readyz", timeout=30),
            ):
                started = time.monotonic()
                response = request()
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert time.monotonic() - started < 5
        finally:
            postgres.start()
        deadline = time.monotonic() + 20
        while httpx.get(db.url + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "db did not reconnect"
            time.sleep(0.2)
        assert httpx.post(db.url + "/orders", json=ORDER, timeout=10).status_code == 201
        assert len(httpx.get(db.url + "/orders", timeout=10).json()) == 2
    finally:
        assert db.stop() == 0


async def test_a_postgresql_restart_under_load_answers_only_503_and_loses_nothing(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Queries in flight failed with "terminating connection due to administrator command"
    (57P01), new connections with "the database system is shutting down" or "is starting up"
    (57P03): 500s, which the gateway passed on as 502s."""
    db = start_service("db", tmp_path, {"MICROSHOP_DATABASE_URL": postgres.create_database()})
    placed: list[tuple[str, httpx.Response]] = []
    read: list[httpx.Response] = []
    restarted = asyncio.Event()

    async def place_orders(client: httpx.AsyncClient) -> None:
        while not restarted.is_set():
            key = uuid.uuid4().hex
            response = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": key})
            placed.append((key, response))

    async def read_orders(client: httpx.AsyncClient) -> None:
        while not restarted.is_set():
            read.append(await client.get("/orders", params={"limit": "5"}))

    try:
        async with httpx.AsyncClient(base_url=db.url, timeout=30) as client:
            load = [asyncio.create_task(place_orders(client)) for _ in range(6)]
            load += [asyncio.create_task(read_orders(client)) for _ in range(2)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(postgres.stop)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(postgres.start)
            deadline = time.monotonic() + 20
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "db did not reconnect"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            restarted.set()
            await asyncio.gather(*load)

            answers = [response for _, response in placed] + read
            assert {response.status_code for response in answers} <= {200, 201, 503}, Counter(
                (response.status_code, response.text[:200]) for response in answers
            )
            unavailable = [response for response in answers if response.status_code == 503]
            assert unavailable, "the restart fell between requests: nothing was tested"
            assert all(
                response.headers["retry-after"] == "1"
                and response.headers["content-type"] == "application/problem+json"
                for response in unavailable
            )
            # Retrying what was refused stores each order once; what was acknowledged is kept.
            for key, response in placed:
                if response.status_code == 503:
                    retried = await client.post(
                        "/orders", json=ORDER, headers={"Idempotency-Key": key}
                    )
                    assert retried.status_code in (200, 201), retried.text
        stored = all_pages(db.url + "/orders", {})
        acknowledged = {
            response.json()["order"]["id"] for _, response in placed if response.status_code == 201
        }
        assert acknowledged <= {order["id"] for order in stored}
        assert len(stored) == len({key for key, _ in placed})
    finally:
        assert db.stop() == 0
