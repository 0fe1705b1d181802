"""The repository on SQLite, through the standard library's driver, on the event loop's thread.

A write here takes tens of microseconds (WAL, `synchronous=NORMAL`: no fsync per commit), far less
than handing each statement to a worker thread and back, which is what an async driver does; the
shop placed 25x more orders per second this way (docs/performance.md). Each method runs to its end
without awaiting, so one connection serves every request and transactions never interleave.
"""

import asyncio
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from microshop.services.db.repository import (
    SCHEMA_REVISION,
    AmountMismatch,
    Created,
    IdempotencyKeyReused,
    OrderNotFound,
    StorageUnavailable,
    fingerprint,
    order_from_row,
    transaction_from_row,
)

logger = logging.getLogger("microshop.db")

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


class _SqliteErrors:
    """A locked, full or unreadable database file is unavailable storage, not a crash.

    A class rather than a generator: it is entered around every statement and transaction."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: object
    ) -> None:
        if isinstance(error, sqlite3.Error) and not isinstance(error, sqlite3.IntegrityError):
            raise StorageUnavailable(str(error)) from error


sqlite_errors = _SqliteErrors()


class SqliteRepository:
    def __init__(self, path: Path | None) -> None:
        """`path` None keeps the data in memory, as the seed did."""
        self.path = path
        self.connection = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
        )
        self.connection.row_factory = sqlite3.Row
        for pragma in PRAGMAS:
            self.connection.execute(pragma)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with sqlite_errors:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def query(self, sql: str, *parameters: Any) -> list[sqlite3.Row]:
        with sqlite_errors:
            return self.connection.execute(sql, parameters).fetchall()

    def schema_revision(self) -> str | None:
        try:
            rows = self.query("SELECT version_num FROM alembic_version")
        except StorageUnavailable:  # no such table: a new database
            return None
        return str(rows[0][0]) if rows else None

    async def migrate(self) -> None:
        """Brings the schema to `SCHEMA_REVISION`, if it is behind.

        A file is migrated by a short-lived process (`microshop.services.db.storage`), so this
        server never loads Alembic and SQLAlchemy (30 MB it would keep for its lifetime); an
        in-memory database can only be reached through this connection, so it is migrated here.
        """
        if self.schema_revision() == SCHEMA_REVISION:
            return
        if self.path is None:
            from microshop.services.db.database import upgrade_sqlite

            with sqlite_errors:
                upgrade_sqlite(lambda: self.connection)
            return
        migration = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "microshop.services.db.storage",
            str(self.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await migration.communicate()
        if migration.returncode != 0:
            raise StorageUnavailable(f"migrating {self.path} failed: {output.decode()[-2000:]}")

    async def close(self) -> None:
        self.connection.close()

    async def ping(self) -> None:
        self.query("SELECT 1")

    async def create_order(
        self, order: OrderCreate, idempotency_key: str | None
    ) -> Created[OrderWithTransaction]:
        order_fingerprint = fingerprint(order) if idempotency_key else None
        with self.transaction() as connection:
            # One statement when the key is new (nearly always); an earlier order with the same
            # key leaves the insert empty, and is then read.
            rows = connection.execute(
                "INSERT INTO orders (item, price_cents, customer, status, idempotency_key,"
                " request_fingerprint) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                (
                    order.item,
                    to_cents(order.price),
                    order.customer,
                    OrderStatus.PENDING.value,
                    idempotency_key,
                    order_fingerprint,
                ),
            ).fetchall()
            if not rows:
                assert idempotency_key is not None, "only a repeated key conflicts"
                existing = self.order_by_key(idempotency_key, order_fingerprint)
                assert existing is not None, "the conflicting order is in the same transaction"
                return Created(existing, created=False)
        return Created({"order": order_from_row(rows[0]), "transaction": None}, created=True)

    def order_by_key(
        self, key: str, expected_fingerprint: str | None
    ) -> OrderWithTransaction | None:
        rows = self.query("SELECT * FROM orders WHERE idempotency_key = ?", key)
        if not rows:
            return None
        if rows[0]["request_fingerprint"] != expected_fingerprint:
            raise IdempotencyKeyReused(key)
        return self.with_transaction(rows[0])

    def with_transaction(self, row: sqlite3.Row) -> OrderWithTransaction:
        return {"order": order_from_row(row), "transaction": self.transaction_for(row["id"])}

    def transaction_for(self, order_id: int) -> Transaction | None:
        rows = self.query("SELECT * FROM transactions WHERE order_id = ?", order_id)
        return transaction_from_row(rows[0]) if rows else None

    async def get_order(self, order_id: int) -> OrderWithTransaction:
        rows = self.query("SELECT * FROM orders WHERE id = ?", order_id)
        if not rows:
            raise OrderNotFound(order_id)
        return self.with_transaction(rows[0])

    async def list_orders(self, query: OrderListQuery) -> list[Order]:
        conditions = ["id > ?"]
        parameters: list[Any] = [query.after]
        if query.status is not None:
            conditions.append("status = ?")
            parameters.append(query.status.value)
        if query.customer is not None:
            conditions.append("customer = ?")
            parameters.append(query.customer)
        rows = self.query(
            f"SELECT * FROM orders WHERE {' AND '.join(conditions)} ORDER BY id LIMIT ?",
            *parameters,
            query.limit,
        )
        return [order_from_row(row) for row in rows]

    async def list_transactions(self, query: ListQuery) -> list[Transaction]:
        rows = self.query(
            "SELECT * FROM transactions WHERE id > ? ORDER BY id LIMIT ?", query.after, query.limit
        )
        return [transaction_from_row(row) for row in rows]

    async def record_transaction(
        self, order_id: int, success: bool, amount_cents: int | None
    ) -> Created[Transaction]:
        with self.transaction() as connection:
            # One statement records it when the order exists, has no transaction yet and costs
            # `amount_cents` (or any price when none is given); otherwise the reason is looked up.
            rows = connection.execute(
                "INSERT INTO transactions (order_id, success, amount_cents)"
                " SELECT id, ?, price_cents FROM orders"
                " WHERE id = ? AND (? IS NULL OR price_cents = ?)"
                " ON CONFLICT (order_id) DO NOTHING RETURNING *",
                (success, order_id, amount_cents, amount_cents),
            ).fetchall()
            if not rows:
                existing = self.transaction_for(order_id)
                if existing is not None:
                    return Created(existing, created=False)
                if not self.query("SELECT 1 FROM orders WHERE id = ?", order_id):
                    raise OrderNotFound(order_id)
                raise AmountMismatch(order_id)
            status = OrderStatus.PAID if success else OrderStatus.DECLINED
            connection.execute(
                "UPDATE orders SET status = ? WHERE id = ?", (status.value, order_id)
            )
        return Created(transaction_from_row(rows[0]), created=True)
