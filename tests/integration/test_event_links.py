"""Rewards and decisions stay tied to an existing experiment (migration 0008).

Their link to `experiments` is checked once per statement by a trigger instead of a per-row
foreign key, and deleting an experiment deletes its rewards and decisions. These tests hold the
database to what the foreign keys guaranteed, including when an insert and a delete race.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import Services
from tests.integration.helpers import delete_waits_for_open_write, write_behind_open_delete_fails

_REWARD = (
    "INSERT INTO rewards (decision_id, metric, experiment_id, arm_index, counted, value) "
    "SELECT d, 'reward', $2, 0, true, 1.0 FROM unnest($1::text[]) AS d"
)
_DECISION = (
    "INSERT INTO decisions (decision_id, experiment_id, arm_index, allocation_id, unit_id, "
    "counted, reason, decided_at) SELECT d, $2, 0, 1, d, true, 'allocated', now() "
    "FROM unnest($1::text[]) AS d"
)


async def _experiment(db: asyncpg.Connection, key: str) -> int:
    experiment_id: int = await db.fetchval(
        "INSERT INTO experiments (key, policy, sticky, salt, settings) "
        "VALUES ($1, 'fixed', false, 's', '{}') RETURNING id",
        key,
    )
    return experiment_id


async def _count(db: asyncpg.Connection, table: str, experiment_id: int) -> int:
    n: int = await db.fetchval(
        f"SELECT count(*) FROM {table} WHERE experiment_id = $1", experiment_id
    )
    return n


@pytest.mark.parametrize("statement", [_REWARD, _DECISION], ids=["rewards", "decisions"])
async def test_a_row_of_a_missing_experiment_fails_the_whole_statement(
    db: asyncpg.Connection, statement: str
) -> None:
    alive = await _experiment(db, "alive")
    await db.execute(statement, ["a1", "a2"], alive)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await db.execute(
            "WITH x AS ("
            + statement.replace("$2", "CASE WHEN d = 'b2' THEN $2 + 1000 ELSE $2 END")
            + " RETURNING 1) SELECT count(*) FROM x",
            ["b1", "b2"],
            alive,
        )
    table = "rewards" if statement is _REWARD else "decisions"
    assert await _count(db, table, alive) == 2  # b1 was not kept either


async def test_deleting_an_experiment_deletes_its_rewards_and_decisions(
    db: asyncpg.Connection,
) -> None:
    gone, kept = await _experiment(db, "gone"), await _experiment(db, "kept")
    for experiment_id, prefix in ((gone, "g"), (kept, "k")):
        ids = [f"{prefix}{i}" for i in range(50)]
        await db.execute(_DECISION, ids, experiment_id)
        await db.execute(_REWARD, ids, experiment_id)
    await db.execute("DELETE FROM experiments WHERE id = $1", gone)
    assert (await _count(db, "rewards", gone), await _count(db, "decisions", gone)) == (0, 0)
    assert (await _count(db, "rewards", kept), await _count(db, "decisions", kept)) == (50, 50)


async def test_a_delete_waits_for_an_open_insert_and_then_removes_its_rows(
    db: asyncpg.Connection, migrated: Services
) -> None:
    experiment_id = await _experiment(db, "race")
    await delete_waits_for_open_write(
        migrated.database_url,
        experiment_id,
        lambda conn: conn.execute(_REWARD, ["r1", "r2"], experiment_id),
    )
    assert await _count(db, "rewards", experiment_id) == 0  # no orphan rows


async def test_an_insert_behind_an_open_delete_fails_once_the_delete_commits(
    db: asyncpg.Connection, migrated: Services
) -> None:
    experiment_id = await _experiment(db, "race")
    await write_behind_open_delete_fails(
        migrated.database_url,
        experiment_id,
        lambda conn: conn.execute(_REWARD, ["r1"], experiment_id),
    )
    assert await _count(db, "rewards", experiment_id) == 0
