"""The repository on real sqlite (file and memory): ids, idempotency, one payment per order."""

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from microshop.common.models import OrderCreate, OrderListQuery, OrderStatus
from microshop.common.settings import Settings, Storage
from microshop.services.db.repository import (
    AmountMismatch,
    IdempotencyKeyReused,
    OrderNotFound,
    Repository,
)
from microshop.services.db.storage import open_repository
from tests.postgres import PostgresServer

ORDER = OrderCreate(item="t-shirt", price=Decimal(100), customer="Gregor")


@pytest.fixture(params=[Storage.SQLITE, Storage.MEMORY, Storage.POSTGRESQL])
async def repository(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    if request.param is Storage.POSTGRESQL:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        settings = Settings(database_url=postgres.create_database())
    else:
        settings = Settings(storage=request.param, data_dir=tmp_path)
    repository = open_repository(settings)
    await repository.migrate()
    yield repository
    await repository.close()


async def test_ids_come_from_the_database_in_creation_order(repository: Repository) -> None:
    first = await repository.create_order(ORDER, None)
    second = await repository.create_order(ORDER, None)
    assert (first.value["order"]["id"], second.value["order"]["id"]) == (1, 2)
    assert first.value["order"]["status"] is OrderStatus.PENDING


async def test_idempotency_key_returns_the_stored_order(repository: Repository) -> None:
    first = await repository.create_order(ORDER, "key-1")
    again = await repository.create_order(ORDER, "key-1")
    assert first.created and not again.created
    assert again.value == first.value
    with pytest.raises(IdempotencyKeyReused):
        await repository.create_order(ORDER.model_copy(update={"price": Decimal(5)}), "key-1")


async def test_paying_settles_the_order_once(repository: Repository) -> None:
    order = (await repository.create_order(ORDER, None)).value["order"]
    paid = await repository.record_transaction(order["id"], success=False, amount_cents=10000)
    again = await repository.record_transaction(order["id"], success=True, amount_cents=None)

    assert paid.created and not again.created
    assert again.value == paid.value
    stored = await repository.get_order(order["id"])
    assert stored["order"]["status"] is OrderStatus.DECLINED
    assert stored["transaction"] == paid.value


async def test_concurrent_payments_for_one_order_record_one_transaction(
    repository: Repository,
) -> None:
    order = (await repository.create_order(ORDER, None)).value["order"]
    results = await asyncio.gather(
        *(
            repository.record_transaction(order["id"], success=True, amount_cents=None)
            for _ in range(50)
        )
    )
    assert sum(result.created for result in results) == 1
    assert len({result.value["id"] for result in results}) == 1


async def test_payment_for_a_missing_order_or_wrong_amount_is_refused(
    repository: Repository,
) -> None:
    with pytest.raises(OrderNotFound):
        await repository.record_transaction(99, success=True, amount_cents=None)
    order = (await repository.create_order(ORDER, None)).value["order"]
    with pytest.raises(AmountMismatch):
        await repository.record_transaction(order["id"], success=True, amount_cents=1)


async def test_listing_is_keyset_paged_and_filtered(repository: Repository) -> None:
    for customer in ("a", "b", "a", "a"):
        await repository.create_order(ORDER.model_copy(update={"customer": customer}), None)
    page = await repository.list_orders(OrderListQuery(limit=2, after=1, customer="a"))
    assert [order["id"] for order in page] == [3, 4]
