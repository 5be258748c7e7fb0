"""Fixtures for tests that talk to the app over HTTP (in-process ASGI, real databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from croupier.app import create_app
from croupier.settings import Settings
from croupier.storage.keys import create_key


@pytest.fixture
async def keys(db: asyncpg.Connection) -> dict[str, str]:
    """An admin key and a decide key, created before the app starts."""
    _, admin = await create_key(db, "admin", "test admin")
    _, decide = await create_key(db, "decide", "test decide")
    return {"admin": admin, "decide": decide}


@pytest.fixture
async def client(settings: Settings, keys: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """A client for a fully started app (lifespan run) on the run's database."""
    app = create_app(settings)
    async with AsyncTestClient(app=app) as c:
        yield c
