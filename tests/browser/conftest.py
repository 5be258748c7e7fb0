"""Fixtures for the browser tests: API keys and a live server with the optimizer on."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from croupier.settings import Settings
from croupier.storage.keys import create_key
from tests.browser.live import LiveServer


def pytest_configure(config: pytest.Config) -> None:
    """Register the `browser` marker (harmless if pyproject.toml registers it too)."""
    config.addinivalue_line(
        "markers", "browser: drives the dashboard in a real headless Chromium (Playwright)"
    )


@pytest.fixture
async def admin_key(db: asyncpg.Connection) -> str:
    """An admin key, created before the server starts."""
    _, key = await create_key(db, "admin", "browser test")
    return key


@pytest.fixture
def live(settings: Settings, admin_key: str) -> Iterator[LiveServer]:
    """A live server on a free port whose optimizer runs every 0.3 s."""
    server = LiveServer(settings.replace(optimizer_enabled=True, optimizer_interval_s=0.3))
    server.start()
    try:
        yield server
    finally:
        server.stop()
