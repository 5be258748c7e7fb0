"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

# a write into a table tied to an experiment, on the connection given
Write = Callable[[asyncpg.Connection], Awaitable[Any]]
_DELETE = "DELETE FROM experiments WHERE id = $1"


def auth(key: str) -> dict[str, str]:
    """Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}


def experiment_body(
    key: str = "exp", policy: str = "fixed", arms: int = 2, **more: Any
) -> dict[str, Any]:
    """A valid create body with `arms` arms, the first the control."""
    body: dict[str, Any] = {
        "key": key,
        "policy": policy,
        "arms": [
            {"key": f"arm{i}", "config": {"prompt": f"variant {i}"}, "control": i == 0}
            for i in range(arms)
        ],
        "metrics": [{"name": "reward", "type": "binary", "direction": "maximize"}],
    }
    body.update(more)
    return body


async def delete_waits_for_open_write(dsn: str, experiment_id: int, write: Write) -> None:
    """`write` in an open transaction; a delete of its experiment must wait for that
    transaction, and completes once it commits."""
    writer, deleter = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = writer.transaction()
        await tx.start()
        await write(writer)  # locks the experiment
        delete = asyncio.create_task(deleter.execute(_DELETE, experiment_id))
        await asyncio.sleep(0.3)
        assert not delete.done(), "the delete must wait for the writing transaction"
        await tx.commit()
        await asyncio.wait_for(delete, 10)
    finally:
        await writer.close()
        await deleter.close()


async def write_behind_open_delete_fails(dsn: str, experiment_id: int, write: Write) -> None:
    """A delete of the experiment in an open transaction; `write` must wait for it, and fail
    with a foreign-key violation once it commits."""
    writer, deleter = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute(_DELETE, experiment_id)
        pending = asyncio.create_task(write(writer))
        await asyncio.sleep(0.3)
        assert not pending.done(), "the write must wait for the deleting transaction"
        await tx.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await asyncio.wait_for(pending, 10)
    finally:
        await writer.close()
        await deleter.close()
