"""Fixtures shared by every test: a real shop of four processes on 127.0.0.1 (tests/shops.py), and
a real PostgreSQL (tests/postgres.py)."""

from collections.abc import Iterator

import httpx
import pytest

from tests.postgres import postgres
from tests.shops import RunningShop, start_shop

__all__ = ["postgres"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    running = start_shop(tmp_path_factory.mktemp("shop"))
    yield running
    assert running.stop() == 0, running.output()[-4000:]


@pytest.fixture
def gateway(shop: RunningShop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.gateway_url, timeout=10) as client:
        yield client
