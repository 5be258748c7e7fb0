"""The PostgreSQL connection pool and the errors that mean "the database is unavailable"."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

# A connection as handed out by the pool, or a plain one; queries accept either.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool

# Errors that mean PostgreSQL cannot be reached or is going away, as opposed to a bug or a
# constraint violation. Requests that need the database answer 503 on these.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
)

# Any database failure a background loop survives (unavailability or a server-side error).
# InternalClientError: asyncpg raises it when a connection broken in the middle of an operation
# (PostgreSQL killed mid-COPY) is released to the pool; the pool has terminated it already.
DB_ERRORS: tuple[type[Exception], ...] = (
    *UNAVAILABLE_ERRORS,
    asyncpg.PostgresError,
    asyncpg.exceptions.InternalClientError,
)

# Errors after which a transaction is simply retried.
RETRY_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond what asyncpg always does (roll back an open
    transaction). asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` on every release, one more round trip for each pooled statement
    (the group commit of rewards is one statement). Croupier's pooled sessions never change
    that state: no SET, no LISTEN, no cursor outside a transaction, no session advisory lock
    (the optimizer's leader lock has a connection of its own)."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool; fails fast (10 s) if PostgreSQL cannot be reached."""
    pool: Any = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        timeout=10,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )
    assert pool is not None
    return pool  # type: ignore[no-any-return]
