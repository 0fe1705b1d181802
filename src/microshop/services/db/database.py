"""Connecting to the configured database and bringing its schema up to date.

sqlite (a WAL file, or memory) and PostgreSQL share one SQLAlchemy Core code path; only the engine
differs. Migrations are Alembic's, run at start-up and by `microshop db migrate`; on PostgreSQL they
run under an advisory lock, so replicas that start together migrate once.
"""

import logging
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from microshop.common.settings import Settings, Storage

logger = logging.getLogger("microshop.db")

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x6D73686F70  # "mshop": any fixed number shared by every replica
POSTGRESQL_POOL_SIZE = 10
POSTGRESQL_STATEMENT_TIMEOUT_SECONDS = 5.0


def postgresql_url(url: str) -> str:
    """`postgresql://...` as users write it, for the asyncpg driver."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else url


def engine_for(settings: Settings) -> AsyncEngine:
    if settings.storage is Storage.POSTGRESQL:
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
    if settings.storage is Storage.MEMORY:
        logger.warning("memory storage: every order is lost when the db service stops")
        # A named in-memory database lives as long as the pool's one connection stays open.
        name = f"microshop-{uuid.uuid4().hex}"
        url = f"sqlite+aiosqlite:///file:{name}?mode=memory&cache=shared&uri=true"
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
