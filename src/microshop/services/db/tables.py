"""The schema: orders and their (at most one) payment transaction."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a BIGINT identity.
IdType = BigInteger().with_variant(Integer(), "sqlite")

orders = Table(
    "orders",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("item", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("customer", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("request_fingerprint", String(64), nullable=True),
    Index("ix_orders_status_id", "status", "id"),
    Index("ix_orders_customer_id", "customer", "id"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("order_id", IdType, ForeignKey("orders.id"), nullable=False, unique=True),
    Column("success", Boolean, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
)
