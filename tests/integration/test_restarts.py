"""`microshop up` keeps services alive like a Deployment, and sqlite data outlives a restart."""

import os
import signal
import time
from pathlib import Path

import httpx

from tests.shops import start_shop

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}


def test_a_killed_service_is_restarted_and_orders_work_again(tmp_path: Path) -> None:
    shop = start_shop(tmp_path)
    try:
        for service in ("db", "order-service"):
            old_pid = shop.pid(service)
            os.kill(old_pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while shop.pid(service) == old_pid and time.monotonic() < deadline:
                time.sleep(0.1)
            assert shop.pid(service) != old_pid
            shop.wait_ready("api-gateway")
            shop.wait_ready(service)

            response = httpx.post(shop.gateway_url + "/orders", json=ORDER, timeout=10)
            assert response.status_code == 201, response.text
    finally:
        assert shop.stop() == 0


def test_sqlite_data_survives_a_restart_of_the_whole_shop(tmp_path: Path) -> None:
    shop = start_shop(tmp_path)
    placed = httpx.post(shop.gateway_url + "/orders", json=ORDER, timeout=10).json()
    assert shop.stop() == 0

    again = start_shop(tmp_path)
    try:
        found = httpx.get(f"{again.gateway_url}/orders/{placed['order']['id']}", timeout=10)
        assert found.json() == placed
    finally:
        assert again.stop() == 0


def test_memory_mode_says_it_loses_data(tmp_path: Path) -> None:
    shop = start_shop(tmp_path, "--storage", "memory")
    try:
        assert httpx.post(shop.gateway_url + "/orders", json=ORDER, timeout=10).status_code == 201
    finally:
        shop.stop()
    assert "memory storage" in shop.output()
