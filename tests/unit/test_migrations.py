"""Migrations: the migrated schema is the one the code queries, and replicas migrate once."""

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from microshop.common.settings import Settings
from microshop.services.db.database import engine_for, migrate
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


async def test_sqlite_schema_matches_the_tables(tmp_path: Path) -> None:
    assert await migrated_differences(Settings(data_dir=tmp_path)) == []


async def test_postgresql_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    settings = Settings(database_url=postgres.create_database())
    assert await migrated_differences(settings, replicas=4) == []


async def test_migrating_again_changes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    await migrated_differences(settings)
    assert await migrated_differences(settings) == []
