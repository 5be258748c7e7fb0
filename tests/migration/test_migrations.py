"""Migrations: applied in order once, recorded with checksums, safe when run concurrently."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from croupier.storage.migrate import MigrationError, load_migrations, migrate, migrations_dir
from tests.conftest import Services, _with_database


@pytest.fixture
async def fresh_db(services: Services) -> AsyncIterator[str]:
    """An empty database of its own, dropped afterwards."""
    name = f"croupier_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(services.database_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_files_are_numbered_in_order() -> None:
    """Every file is NNNN_name.sql and versions are unique and increasing."""
    found = load_migrations()
    assert [m.version for m in found] == sorted({m.version for m in found})
    assert found[0].name == "0001_initial.sql"


async def test_concurrent_migrators_apply_each_file_once(fresh_db: str) -> None:
    """Several processes starting at once: the advisory lock lets one apply, the others wait."""
    conns = [await asyncpg.connect(fresh_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    applied = [r for r in results if r]
    assert len(applied) == 1 and applied[0] == [m.name for m in load_migrations()]
    conn = await asyncpg.connect(fresh_db)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in rows] == [
            (m.version, m.checksum) for m in load_migrations()
        ]
        assert await migrate(conn) == []  # a second run is a no-op
        # counts are bigint and values double precision everywhere (asyncpg gives int/float)
        types = {
            (r["table_name"], r["column_name"]): r["data_type"]
            for r in await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        }
        assert types[("arm_stats", "exposures")] == "bigint"
        assert types[("metric_stats", "n")] == "bigint"
        for column in ("sum", "sum_sq"):
            assert types[("metric_stats", column)] == "double precision"
        assert types[("arm_stats", "expected_exposures")] == "double precision"
        assert types[("rewards", "value")] == "double precision"
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(fresh_db: str, tmp_path: Path) -> None:
    """Changing a file after it was applied stops the migrator with a clear error."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    conn = await asyncpg.connect(fresh_db)
    try:
        await migrate(conn, copy)
        first = sorted(copy.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, copy)
    finally:
        await conn.close()
