"""Migrations: the migrated schema is the one the code queries, and replicas migrate once."""

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text

from microshop.common.settings import Settings
from microshop.services.db.database import MIGRATIONS, engine_for, migrate
from microshop.services.db.repository import SCHEMA_REVISION
from microshop.services.db.storage import open_repository
from microshop.services.db.tables import metadata
from tests.postgres import PostgresServer


def differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def migrated_differences(settings: Settings, replicas: int = 1) -> list[object]:
    engines = [engine_for(settings) for _ in range(replicas)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as connection:
            found = await connection.run_sync(differences)
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar()
        assert version == "0001"
        return found
    finally:
        for engine in engines:
            await engine.dispose()


def sqlite_differences(path: Path) -> list[object]:
    with create_engine(f"sqlite:///{path}").connect() as connection:
        return differences(connection)


async def test_sqlite_schema_matches_the_tables(tmp_path: Path) -> None:
    repository = open_repository(Settings(data_dir=tmp_path))
    await repository.migrate()
    await repository.migrate()  # a second time changes nothing
    await repository.close()
    assert sqlite_differences(tmp_path / "microshop.sqlite3") == []


async def test_postgresql_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    settings = Settings(database_url=postgres.create_database())
    assert await migrated_differences(settings, replicas=4) == []


def test_the_code_expects_the_newest_migration() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_current_head() == SCHEMA_REVISION
