"""Our order-service's settlement sweep over the seed's db, which has no statuses, ignores paging
and filters, and records every charge it is sent: pending orders are charged once, later, and
never again however often the sweep runs.

Behind the seed's payment-service, which records whatever it is sent as well, the sweep is the
only guard; behind ours, the decline is ours too."""

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from microshop.ports import free_port
from tests.seed.processes import fixed_ports_lock, seed_port, start_seed
from tests.shops import ServiceProcess, start_service

pytestmark = pytest.mark.integration

SWEEP_SETTINGS = {
    "MICROSHOP_SETTLE_INTERVAL": "0.1",
    "MICROSHOP_REQUEST_TIMEOUT": "0.5",
    "MICROSHOP_CONNECT_TIMEOUT": "0.2",
    "MICROSHOP_RETRIES": "0",
}
"""Ten sweeps a second; placing an order then takes at most 2 s, the grace before a sweep takes
an order without a transaction."""
PRICES = (5, 20000, 7)


def transactions_per_order(db: str) -> Counter[int]:
    return Counter(transaction["orderId"] for transaction in httpx.get(db + "/transactions").json())


def start_payments(side: str, db: ServiceProcess, port: int, directory: Path) -> ServiceProcess:
    if side == "seed":
        return start_seed("payment-service", directory, [f"127.0.0.1:{db.port}"], port)
    environment = {"MICROSHOP_DB_SERVICE_URL": db.url, **SWEEP_SETTINGS}
    return start_service("payment-service", directory, environment, port=port)


@pytest.mark.parametrize("payments_side", ["seed", "ours"])
def test_pending_orders_are_charged_once_when_payment_returns(
    tmp_path: Path, payments_side: str
) -> None:
    with fixed_ports_lock():  # the real original, when MICROSHOP_SEED_DIR names it, is on 3004
        db = start_seed("db", tmp_path, [])
        # Nothing listens there yet: payment-service is down.
        payment_port = seed_port("payment-service") if payments_side == "seed" else free_port()
        orders = start_service(
            "order-service",
            tmp_path,
            {
                "MICROSHOP_DB_SERVICE_URL": db.url,
                "MICROSHOP_PAYMENT_SERVICE_URL": f"http://127.0.0.1:{payment_port}",
                **SWEEP_SETTINGS,
            },
        )
        try:
            placed = [
                httpx.post(
                    orders.url + "/orders",
                    json={"item": "mug", "price": price, "customer": "Eve"},
                )
                for price in PRICES
            ]
            assert [answer.status_code for answer in placed] == [202, 202, 202]
            assert transactions_per_order(db.url) == Counter()
            started = time.monotonic()

            payments = start_payments(payments_side, db, payment_port, tmp_path)
            try:
                while len(charged := transactions_per_order(db.url)) < len(PRICES):
                    assert time.monotonic() - started < 15, orders.output()[-3000:]
                    time.sleep(0.1)
                time.sleep(1.5)  # some fifteen sweeps more, each reading the whole list again

                assert transactions_per_order(db.url) == Counter({1: 1, 2: 1, 3: 1})
                assert charged == transactions_per_order(db.url)
                if payments_side == "ours":
                    listed = httpx.get(payments.url + "/transactions").json()
                    assert {entry["orderId"]: entry["success"] for entry in listed} == {
                        1: True,
                        2: False,  # above 10,000: our payment-service's rule, not the seed's db
                        3: True,
                    }
            finally:
                payments.stop()
            assert db.process.poll() is None
        finally:
            orders.stop()
            db.stop()
