"""Shared fixtures: real PostgreSQL and Redis for every integration test.

By default the embedded servers (SPEC §5) are started once per test session in a temporary
directory — what a user on a fresh laptop gets. With `CROUPIER_TEST_DATABASE_URL` /
`CROUPIER_TEST_REDIS_URL` set, the running servers are used instead. Either way each test run
gets its own database (`croupier_test_<random>`) and its own Redis key prefix, so runs cannot
disturb each other; each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis as redis_sync

from croupier.settings import Settings

# tables emptied between tests (everything but the migration record and the secret)
_TABLES = (
    "audit_log, api_keys, sequential_history, sequential_state, metric_stats, arm_stats, "
    "rewards, decisions, allocations, arms, experiments"
)


@dataclass(frozen=True)
class Services:
    """Where this test run's PostgreSQL database and Redis live."""

    database_url: str
    redis_url: str
    redis_prefix: str


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """A fresh database and Redis prefix for this run, on external or embedded servers."""
    db_url = os.environ.get("CROUPIER_TEST_DATABASE_URL")
    redis_url = os.environ.get("CROUPIER_TEST_REDIS_URL")
    embedded = None
    tmp = None
    if not db_url or not redis_url:
        from croupier.storage.embedded import EmbeddedServices

        tmp = tempfile.TemporaryDirectory(prefix="croupier-test-")
        embedded = EmbeddedServices(Path(tmp.name) / "data")
        urls = embedded.start()
        db_url = db_url or urls.database_url
        redis_url = redis_url or urls.redis_url
    run = secrets.token_hex(4)
    db_name = f"croupier_test_{run}"

    async def create() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    prefix = f"croupier_test_{run}"
    try:
        yield Services(_with_database(db_url, db_name), redis_url, prefix)
    finally:
        asyncio.run(drop())
        client = redis_sync.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()
        if embedded is not None:
            embedded.stop()
        if tmp is not None:
            tmp.cleanup()


@pytest.fixture(scope="session")
def migrated(services: Services) -> Services:
    """The run's database with every migration applied."""
    from croupier.storage.migrate import migrate_url

    asyncio.run(migrate_url(services.database_url))
    return services


@pytest.fixture
async def db(migrated: Services) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's database, with every table emptied first."""
    conn = await asyncpg.connect(migrated.database_url)
    await conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def settings(migrated: Services) -> Settings:
    """Settings pointing at the run's database and Redis prefix, with fast background loops."""
    return Settings(
        database_url=migrated.database_url,
        redis_url=migrated.redis_url,
        redis_prefix=migrated.redis_prefix,
        flush_interval_ms=20,
        snapshot_poll_interval_s=0.2,
        optimizer_enabled=False,
    )
