"""The storage interface of the db service, and what its two implementations share.

`SqliteRepository` (a file, or memory) and `PostgresRepository` answer the same calls with the same
rules: paying an order is one database transaction that records the payment and settles the order,
and the unique `order_id` makes a second payment for the same order impossible.
"""

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from microshop.common.models import (
    ListQuery,
    Order,
    OrderCreate,
    OrderListQuery,
    OrderStatus,
    OrderWithTransaction,
    Transaction,
    price_to_json,
    to_cents,
)

logger = logging.getLogger("microshop.db")

SCHEMA_REVISION = "0001"
"""The newest migration under migrations/versions: what this code expects to find."""

RecordT = TypeVar("RecordT")

SUCCESS_BY_STATUS = {OrderStatus.PAID: True, OrderStatus.DECLINED: False, OrderStatus.PENDING: None}


class StorageUnavailable(Exception):
    """The database cannot be reached or did not answer in time."""


class OrderNotFound(Exception):
    pass


class IdempotencyKeyReused(Exception):
    """The key was already used for a different order."""


class AmountMismatch(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Created(Generic[RecordT]):
    """What a write returns: the stored record and whether this call created it."""

    value: RecordT
    created: bool


def fingerprint(order: OrderCreate) -> str:
    canonical = f"{order.item}\x00{to_cents(order.price)}\x00{order.customer}"
    return hashlib.sha256(canonical.encode()).hexdigest()


class Row(Protocol):
    """A database row by column name: SQLAlchemy's mapping rows and sqlite3.Row alike."""

    def __getitem__(self, column: str) -> Any: ...


def order_from_row(row: Row) -> Order:
    status = OrderStatus(row["status"])
    return {
        "id": row["id"],
        "item": row["item"],
        "price": price_to_json(row["price_cents"]),
        "customer": row["customer"],
        "status": status,
        "success": SUCCESS_BY_STATUS[status],
    }


def transaction_from_row(row: Row) -> Transaction:
    return {
        "id": row["id"],
        "orderId": row["order_id"],
        "success": bool(row["success"]),
        "amount": price_to_json(row["amount_cents"]),
    }


class Repository(Protocol):
    async def migrate(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def create_order(
        self, order: OrderCreate, idempotency_key: str | None
    ) -> Created[OrderWithTransaction]:
        """Stores a pending order; with a known key, returns the order stored the first time."""

    async def get_order(self, order_id: int) -> OrderWithTransaction: ...

    async def list_orders(self, query: OrderListQuery) -> list[Order]: ...

    async def list_transactions(self, query: ListQuery) -> list[Transaction]: ...

    async def record_transaction(
        self, order_id: int, success: bool, amount_cents: int | None
    ) -> Created[Transaction]:
        """Records the payment and settles its order at most once; a repeat returns the first."""


class SlowedRepository:
    """A repository whose every call first waits `before_call`: the db's slow-storage fault."""

    def __init__(self, inner: Repository, before_call: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._before_call = before_call

    async def migrate(self) -> None:
        await self._inner.migrate()

    async def close(self) -> None:
        await self._inner.close()

    async def ping(self) -> None:
        await self._before_call()
        await self._inner.ping()

    async def create_order(
        self, order: OrderCreate, idempotency_key: str | None
    ) -> Created[OrderWithTransaction]:
        await self._before_call()
        return await self._inner.create_order(order, idempotency_key)

    async def get_order(self, order_id: int) -> OrderWithTransaction:
        await self._before_call()
        return await self._inner.get_order(order_id)

    async def list_orders(self, query: OrderListQuery) -> list[Order]:
        await self._before_call()
        return await self._inner.list_orders(query)

    async def list_transactions(self, query: ListQuery) -> list[Transaction]:
        await self._before_call()
        return await self._inner.list_transactions(query)

    async def record_transaction(
        self, order_id: int, success: bool, amount_cents: int | None
    ) -> Created[Transaction]:
        await self._before_call()
        return await self._inner.record_transaction(order_id, success, amount_cents)
