"""The db service's storage wiring: which repository the settings select, where a sqlite file
lives, and bringing a schema up to date.

`python -m microshop.services.db.storage PATH` migrates one sqlite file: the db service runs it as
a short-lived process, so that the server itself never loads Alembic and SQLAlchemy.
"""

import logging
import sqlite3
import sys
from pathlib import Path

from microshop.common.settings import Settings, Storage
from microshop.services.db.repository import Repository

logger = logging.getLogger("microshop.db")

SQLITE_FILE_NAME = "microshop.sqlite3"


def sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / SQLITE_FILE_NAME


def open_repository(settings: Settings) -> Repository:
    # Imported here so that each process loads only the driver it uses.
    if settings.storage is Storage.POSTGRESQL:
        from microshop.services.db.database import engine_for
        from microshop.services.db.postgresql import PostgresRepository

        return PostgresRepository(engine_for(settings))
    from microshop.services.db.sqlite import SqliteRepository

    if settings.storage is Storage.MEMORY:
        logger.warning("memory storage: every order is lost when the db service stops")
        return SqliteRepository(None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteRepository(sqlite_path(settings))


async def migrate(settings: Settings) -> None:
    """Brings the configured storage's schema up to date, as `microshop db migrate` does."""
    if settings.storage is Storage.SQLITE:
        migrate_sqlite_file(sqlite_path(settings))
        return
    repository = open_repository(settings)
    try:
        await repository.migrate()
    finally:
        await repository.close()


def migrate_sqlite_file(path: Path) -> None:
    from microshop.services.db.database import upgrade_sqlite

    path.parent.mkdir(parents=True, exist_ok=True)
    upgrade_sqlite(lambda: sqlite3.connect(path))


if __name__ == "__main__":
    migrate_sqlite_file(Path(sys.argv[1]))
