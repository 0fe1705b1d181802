"""The storage interface of the db service, and its SQLAlchemy Core implementation.

One repository serves every backend: a sqlite file (WAL) by default, sqlite in memory for the seed's
mode. Paying an order is one database transaction that records the payment and settles the order;
the unique `order_id` makes a second payment for the same order impossible.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

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
from microshop.common.settings import Settings, Storage
from microshop.services.db.tables import metadata, orders, transactions

logger = logging.getLogger("microshop.db")

SUCCESS_BY_STATUS = {OrderStatus.PAID: True, OrderStatus.DECLINED: False, OrderStatus.PENDING: None}


class OrderNotFound(Exception):
    pass


class IdempotencyKeyReused(Exception):
    """The key was already used for a different order."""


class AmountMismatch(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Created:
    """What a write returns: the stored record and whether this call created it."""

    value: Any
    created: bool


def fingerprint(order: OrderCreate) -> str:
    canonical = f"{order.item}\x00{to_cents(order.price)}\x00{order.customer}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_from_row(row: RowMapping) -> Order:
    status = OrderStatus(row["status"])
    return Order(
        id=row["id"],
        item=row["item"],
        price=price_to_json(row["price_cents"]),
        customer=row["customer"],
        status=status,
        success=SUCCESS_BY_STATUS[status],
    )


def transaction_from_row(row: RowMapping) -> Transaction:
    return Transaction(
        id=row["id"],
        orderId=row["order_id"],
        success=row["success"],
        amount=price_to_json(row["amount_cents"]),
    )


def engine_for(settings: Settings) -> AsyncEngine:
    if settings.storage is Storage.MEMORY:
        logger.warning("memory storage: every order is lost when the db service stops")
        # A named in-memory database lives as long as the pool's one connection stays open.
        url = f"sqlite+aiosqlite:///file:microshop-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{Path(settings.data_dir) / 'microshop.sqlite3'}"
    # One connection: SQLite has one writer at a time anyway, and a single connection, handed to
    # one transaction at a time by the pool, never meets "database is locked".
    engine = create_async_engine(
        url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=30
    )
    event.listen(engine.sync_engine, "connect", configure_sqlite_connection)
    return engine


def configure_sqlite_connection(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",
    ):
        cursor.execute(pragma)
    cursor.close()


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_schema(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def create_order(self, order: OrderCreate, idempotency_key: str | None) -> Created:
        """Stores a pending order; with a known key, returns the order stored the first time."""
        order_fingerprint = fingerprint(order) if idempotency_key else None
        values = {
            "item": order.item,
            "price_cents": to_cents(order.price),
            "customer": order.customer,
            "status": OrderStatus.PENDING.value,
            "idempotency_key": idempotency_key,
            "request_fingerprint": order_fingerprint,
        }
        try:
            async with self.engine.begin() as connection:
                if idempotency_key:
                    existing = await self._order_by_key(
                        connection, idempotency_key, order_fingerprint
                    )
                    if existing is not None:
                        return Created(existing, created=False)
                result = await connection.execute(insert(orders).values(values).returning(orders))
                return Created(
                    OrderWithTransaction(
                        order=order_from_row(result.mappings().one()), transaction=None
                    ),
                    created=True,
                )
        except IntegrityError:
            if not idempotency_key:
                raise
        async with self.engine.connect() as connection:
            existing = await self._order_by_key(connection, idempotency_key, order_fingerprint)
        if existing is None:
            raise RuntimeError("order with this idempotency key vanished")
        return Created(existing, created=False)

    async def _order_by_key(
        self, connection: AsyncConnection, key: str, expected_fingerprint: str | None
    ) -> OrderWithTransaction | None:
        row = (
            (await connection.execute(select(orders).where(orders.c.idempotency_key == key)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        if row["request_fingerprint"] != expected_fingerprint:
            raise IdempotencyKeyReused(key)
        return await self._with_transaction(connection, row)

    async def _with_transaction(
        self, connection: AsyncConnection, row: RowMapping
    ) -> OrderWithTransaction:
        transaction_row = (
            (
                await connection.execute(
                    select(transactions).where(transactions.c.order_id == row["id"])
                )
            )
            .mappings()
            .first()
        )
        transaction = None if transaction_row is None else transaction_from_row(transaction_row)
        return OrderWithTransaction(order=order_from_row(row), transaction=transaction)

    async def get_order(self, order_id: int) -> OrderWithTransaction:
        async with self.engine.connect() as connection:
            row = (
                (await connection.execute(select(orders).where(orders.c.id == order_id)))
                .mappings()
                .first()
            )
            if row is None:
                raise OrderNotFound(order_id)
            return await self._with_transaction(connection, row)

    async def list_orders(self, query: OrderListQuery) -> list[Order]:
        statement = select(orders).where(orders.c.id > query.after)
        if query.status is not None:
            statement = statement.where(orders.c.status == query.status.value)
        if query.customer is not None:
            statement = statement.where(orders.c.customer == query.customer)
        statement = statement.order_by(orders.c.id).limit(query.limit)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [order_from_row(row) for row in rows]

    async def list_transactions(self, query: ListQuery) -> list[Transaction]:
        statement = (
            select(transactions)
            .where(transactions.c.id > query.after)
            .order_by(transactions.c.id)
            .limit(query.limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [transaction_from_row(row) for row in rows]

    async def record_transaction(
        self, order_id: int, success: bool, amount_cents: int | None
    ) -> Created:
        """Records the payment and settles the order in one database transaction, at most once.

        A repeated request for an order that already has a transaction returns that transaction.
        """
        try:
            async with self.engine.begin() as connection:
                existing = await self._transaction_for(connection, order_id)
                if existing is not None:
                    return Created(existing, created=False)
                price_cents = (
                    await connection.execute(
                        select(orders.c.price_cents).where(orders.c.id == order_id)
                    )
                ).scalar()
                if price_cents is None:
                    raise OrderNotFound(order_id)
                if amount_cents is not None and amount_cents != price_cents:
                    raise AmountMismatch(order_id)
                row = (
                    (
                        await connection.execute(
                            insert(transactions)
                            .values(order_id=order_id, success=success, amount_cents=price_cents)
                            .returning(transactions)
                        )
                    )
                    .mappings()
                    .one()
                )
                status = OrderStatus.PAID if success else OrderStatus.DECLINED
                await connection.execute(
                    update(orders).where(orders.c.id == order_id).values(status=status.value)
                )
                return Created(transaction_from_row(row), created=True)
        except IntegrityError:
            async with self.engine.connect() as connection:
                existing = await self._transaction_for(connection, order_id)
            if existing is None:
                raise
            return Created(existing, created=False)

    async def _transaction_for(
        self, connection: AsyncConnection, order_id: int
    ) -> Transaction | None:
        row = (
            (
                await connection.execute(
                    select(transactions).where(transactions.c.order_id == order_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else transaction_from_row(row)
