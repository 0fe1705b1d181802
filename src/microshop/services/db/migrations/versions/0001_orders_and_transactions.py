"""Orders and their (at most one) transaction.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
    )
    op.create_index("ix_orders_status_id", "orders", ["status", "id"])
    op.create_index("ix_orders_customer_id", "orders", ["customer", "id"])
    op.create_table(
        "transactions",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("order_id", IdType, sa.ForeignKey("orders.id"), nullable=False, unique=True),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transactions")
    op.drop_table("orders")
