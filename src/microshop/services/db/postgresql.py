"""The repository on PostgreSQL, through SQLAlchemy Core and asyncpg: how the data tier scales out.

Several db replicas may share one database: ids come from its sequences, and the unique keys on
`transactions.order_id` and `orders.idempotency_key` settle any race between replicas.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from microshop.common.models import (
    ListQuery,
    Order,
    OrderCreate,
    OrderListQuery,
    OrderStatus,
    OrderWithTransaction,
    Transaction,
    to_cents,
)
from microshop.services.db.database import migrate
from microshop.services.db.repository import (
    AmountMismatch,
    Created,
    IdempotencyKeyReused,
    OrderNotFound,
    StorageUnavailable,
    fingerprint,
    order_from_row,
    transaction_from_row,
)
from microshop.services.db.tables import orders, transactions

UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")
"""SQLSTATEs (classes, or one code) of a server that cannot serve now but will: a connection
exception, an operator's intervention (57P01 a connection ended by a shutdown, 57P03 shutting
down or starting up: a restart or a failover), too many connections."""


def _is_unavailable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return error.connection_invalidated or sqlstate.startswith(UNAVAILABLE_SQLSTATES)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Driver failures (refused, reset, timed out, the server restarting) become
    `StorageUnavailable`."""
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError) as error:
        raise StorageUnavailable(str(error).splitlines()[0]) from error
    except DBAPIError as error:
        if _is_unavailable(error):
            raise StorageUnavailable(str(error).splitlines()[0]) from error
        raise


class PostgresRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def migrate(self) -> None:
        with storage_errors():
            await migrate(self.engine)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        with storage_errors():
            async with self.engine.connect() as connection:
                yield connection

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one database transaction, committed when the block ends."""
        async with self.reading() as connection, connection.begin():
            yield connection

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.reading() as connection:
            await connection.execute(text("SELECT 1"))

    async def create_order(
        self, order: OrderCreate, idempotency_key: str | None
    ) -> Created[OrderWithTransaction]:
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
            async with self.writing() as connection:
                if idempotency_key:
                    existing = await self.order_by_key(
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
        async with self.reading() as connection:
            existing = await self.order_by_key(connection, idempotency_key, order_fingerprint)
        if existing is None:
            raise RuntimeError("order with this idempotency key vanished")
        return Created(existing, created=False)

    async def order_by_key(
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
        return await self.with_transaction(connection, row)

    async def with_transaction(
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
        return {"order": order_from_row(row), "transaction": transaction}

    async def get_order(self, order_id: int) -> OrderWithTransaction:
        async with self.reading() as connection:
            row = (
                (await connection.execute(select(orders).where(orders.c.id == order_id)))
                .mappings()
                .first()
            )
            if row is None:
                raise OrderNotFound(order_id)
            return await self.with_transaction(connection, row)

    async def list_orders(self, query: OrderListQuery) -> list[Order]:
        statement = select(orders).where(orders.c.id > query.after)
        if query.status is not None:
            statement = statement.where(orders.c.status == query.status.value)
        if query.customer is not None:
            statement = statement.where(orders.c.customer == query.customer)
        statement = statement.order_by(orders.c.id).limit(query.limit)
        async with self.reading() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [order_from_row(row) for row in rows]

    async def list_transactions(self, query: ListQuery) -> list[Transaction]:
        statement = (
            select(transactions)
            .where(transactions.c.id > query.after)
            .order_by(transactions.c.id)
            .limit(query.limit)
        )
        async with self.reading() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [transaction_from_row(row) for row in rows]

    async def record_transaction(
        self, order_id: int, success: bool, amount_cents: int | None
    ) -> Created[Transaction]:
        """Records the payment and settles the order in one database transaction, at most once.

        A repeated request for an order that already has a transaction returns that transaction.
        """
        try:
            async with self.writing() as connection:
                existing = await self.transaction_for(connection, order_id)
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
            async with self.reading() as connection:
                existing = await self.transaction_for(connection, order_id)
            if existing is None:
                raise
            return Created(existing, created=False)

    async def transaction_for(
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
