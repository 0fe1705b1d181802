"""The schema's migrations (Alembic's, for both backends) and the PostgreSQL engine.

Migrations run at start-up and by `microshop db migrate`; on PostgreSQL they run under an advisory
lock, so replicas that start together migrate once.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from microshop.common.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x6D73686F70  # "mshop": any fixed number shared by every replica
POSTGRESQL_POOL_SIZE = 10
POSTGRESQL_STATEMENT_TIMEOUT_SECONDS = 5.0


def postgresql_url(url: str) -> str:
    """`postgresql://...` as users write it, for the asyncpg driver."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else url


def engine_for(settings: Settings) -> AsyncEngine:
    assert settings.database_url is not None
    return create_async_engine(
        postgresql_url(settings.database_url.get_secret_value()),
        pool_size=POSTGRESQL_POOL_SIZE,
        max_overflow=POSTGRESQL_POOL_SIZE,
        pool_timeout=settings.request_timeout,
        pool_pre_ping=True,  # a restarted server leaves dead connections: replace them
        connect_args={
            "timeout": settings.connect_timeout * 4,
            "command_timeout": POSTGRESQL_STATEMENT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": "microshop-db"},
        },
    )


def upgrade_sqlite(connect: Callable[[], Any]) -> None:
    """Migrates the SQLite database that `connect` opens (a file, or an open connection)."""
    engine = create_engine("sqlite://", creator=connect, poolclass=StaticPool)
    with engine.connect() as connection:
        upgrade_schema(connection)
        connection.commit()


def upgrade_schema(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Applies every pending migration, once, however many replicas start at the same time."""
    async with engine.connect() as connection:
        is_postgresql = connection.dialect.name == "postgresql"
        if is_postgresql:
            await connection.execute(
                text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
            await connection.commit()
        try:
            await connection.run_sync(upgrade_schema)
            await connection.commit()
        finally:
            if is_postgresql:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                await connection.commit()
