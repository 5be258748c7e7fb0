"""Plain-SQL migrations: applied in order, recorded with a checksum, under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from croupier.storage.db import Conn

logger = logging.getLogger("croupier.migrate")

MIGRATION_LOCK_ID = 0x43524F55  # "CROU": serialises concurrent migrators
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text; an applied migration must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database's migration history does not match the migration files."""


def migrations_dir() -> Path:
    """The repository's `migrations/` in a checkout, else the copy packaged in the wheel."""
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "migrations"
    if checkout.is_dir():
        return checkout
    return here.parents[1] / "_migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """All migration files, sorted by version; duplicate versions are an error."""
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return found


async def migrate(conn: Conn, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run concurrently."""
    migrations = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {r["version"]: r for r in rows}
        done: list[str] = []
        for m in migrations:
            row = applied.get(m.version)
            if row is not None:
                if row["checksum"] != m.checksum:
                    raise MigrationError(
                        f"migration {m.name} was changed after it was applied "
                        f"(checksum {row['checksum'][:12]} in the database, {m.checksum[:12]} "
                        "on disk); add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            logger.info("applied migration %s", m.name)
            done.append(m.name)
        unknown = set(applied) - {m.version for m in migrations}
        if unknown:
            logger.warning("database has migrations this version does not know: %s", unknown)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


async def migrate_url(dsn: str) -> list[str]:
    """Connect, migrate, disconnect."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
