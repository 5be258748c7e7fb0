"""The sequential p-value history (migrations 0005, 0006): which merged p-values become points;
the sequential state and history stay tied to an existing experiment (migration 0009).

The rule, per stored row of a `sequential_merge` statement: a point when the comparison has none
yet, or when the stored value is below the last point's and fell by 2 % or more or the last
point is a minute old; its exposures are the arm's plus the control's. The triggers apply it to a
whole statement at once; these tests check it row by row against a model of the rule, for
statements of one row and of many, inserts and updates (ON CONFLICT) mixed.
"""

from __future__ import annotations

import random

import asyncpg
import pytest

from croupier.storage.queries import Q
from tests.conftest import Services
from tests.integration.helpers import delete_waits_for_open_write, write_behind_open_delete_fails

_Key = tuple[int, str, int, str]


async def _experiment(db: asyncpg.Connection, key: str, arms: int, control: int) -> int:
    eid: int = await db.fetchval(
        "INSERT INTO experiments (key, policy, sticky, salt, settings) "
        "VALUES ($1, 'fixed', false, 's', '{}') RETURNING id",
        key,
    )
    await db.execute(
        "INSERT INTO arms (experiment_id, arm_index, key, control) "
        "SELECT $1, g, 'arm' || g, g = $3 FROM generate_series(0, $2 - 1) AS g",
        eid,
        arms,
        control,
    )
    await db.execute(Q["arm_stats_init"], eid, arms)
    return eid


async def _set_exposures(db: asyncpg.Connection, eid: int, exposures: list[int]) -> None:
    await db.execute(
        "UPDATE arm_stats s SET exposures = v.n FROM unnest($2::bigint[]) WITH ORDINALITY "
        "AS v(n, i) WHERE s.experiment_id = $1 AND s.arm_index = v.i - 1",
        eid,
        exposures,
    )


async def _merge(db: asyncpg.Connection, rows: list[tuple[_Key, float]]) -> None:
    ids, metrics, arms, kinds, ps = (list(c) for c in zip(*[(*k, p) for k, p in rows], strict=True))
    await db.fetch(Q["sequential_merge_many"], ids, metrics, arms, kinds, ps)


async def _points(db: asyncpg.Connection) -> dict[_Key, list[tuple[float, int]]]:
    out: dict[_Key, list[tuple[float, int]]] = {}
    for r in await db.fetch(
        "SELECT experiment_id, metric, arm_index, kind, p_value, exposures "
        "FROM sequential_history ORDER BY experiment_id, metric, arm_index, kind, at"
    ):
        key = (r["experiment_id"], r["metric"], r["arm_index"], r["kind"])
        out.setdefault(key, []).append((r["p_value"], r["exposures"]))
    return out


async def test_history_points_of_one_statement(db: asyncpg.Connection) -> None:
    """New comparisons get a point; a later statement adds points only where the value fell by
    2 % or more (or at all once the last point is a minute old); exposures are the arm's and the
    control's (the control need not be arm 0)."""
    a = await _experiment(db, "a", 3, control=0)
    b = await _experiment(db, "b", 2, control=1)
    await _set_exposures(db, a, [100, 200, 300])
    await _set_exposures(db, b, [10, 20])
    a1, a2 = (a, "reward", 1, "two_sided"), (a, "reward", 2, "two_sided")
    ag, b0 = (a, "latency", 1, "guardrail"), (b, "reward", 0, "two_sided")
    await _merge(db, [(a1, 0.5), (a2, 0.5), (ag, 1.0), (b0, 0.2)])
    assert await _points(db) == {
        a1: [(0.5, 300)],
        a2: [(0.5, 400)],
        ag: [(1.0, 300)],
        b0: [(0.2, 30)],
    }

    await _set_exposures(db, a, [110, 210, 310])
    # a1 falls by 1 % (no point), a2 by 3 % (a point), the guardrail and b0 do not fall
    await _merge(db, [(a1, 0.495), (a2, 0.485), (ag, 1.0), (b0, 0.3)])
    points = await _points(db)
    assert points[a1] == [(0.5, 300)] and points[a2] == [(0.5, 400), (0.485, 420)]
    assert points[ag] == [(1.0, 300)] and points[b0] == [(0.2, 30)]

    await db.execute("UPDATE sequential_history SET at = at - interval '61 seconds'")
    # a minute later any fall is a point (a1: 0.495 -> 0.494 is below the last point, 0.5)
    await _merge(db, [(a1, 0.494), (b0, 0.2)])
    points = await _points(db)
    assert points[a1] == [(0.5, 300), (0.494, 320)] and points[b0] == [(0.2, 30)]

    # the one-experiment merge (GET …/results) follows the same rule
    await db.fetch(Q["sequential_merge"], b, ["reward"], [0], ["two_sided"], [0.1])
    assert (await _points(db))[b0] == [(0.2, 30), (0.1, 30)]


async def test_history_matches_the_rule_row_by_row(db: asyncpg.Connection) -> None:
    """Random statements of one row to all of them, new and stored comparisons mixed, against
    a model of the rule applied to each row on its own."""
    rng = random.Random(5)
    arms_of = {}
    for i in range(6):
        k = rng.randint(2, 5)
        eid = await _experiment(db, f"e{i}", k, control=rng.randrange(k))
        arms_of[eid] = k
    control = {
        r["experiment_id"]: r["arm_index"]
        for r in await db.fetch("SELECT experiment_id, arm_index FROM arms WHERE control")
    }
    keys = [
        (eid, metric, arm, kind)
        for eid, k in arms_of.items()
        for metric, kind in (("reward", "two_sided"), ("error", "guardrail"))
        for arm in range(k)
        if arm != control[eid]
    ]
    stored: dict[_Key, float] = {}
    model: dict[_Key, list[tuple[float, int]]] = {}
    exposures = {eid: [0] * k for eid, k in arms_of.items()}
    for _ in range(40):
        for eid in arms_of:
            exposures[eid] = [n + rng.randint(0, 50) for n in exposures[eid]]
            await _set_exposures(db, eid, exposures[eid])
        aged = rng.random() < 0.2
        if aged:  # every point a day older for this statement only
            await db.execute("UPDATE sequential_history SET at = at - interval '1 day'")
        rows: list[tuple[_Key, float]] = []
        for key in sorted(rng.sample(keys, rng.randint(1, len(keys)))):
            old = stored.get(key)
            if old is None:
                p = rng.random()
            else:
                p = rng.choice([old, old * 1.1, old * 0.99, old * 0.985, old * 0.9, old * 0.5])
            rows.append((key, p))
        await _merge(db, rows)
        for key, p in rows:
            new = min(p, stored.get(key, p))
            stored[key] = new
            eid, _, arm, _ = key
            exp = exposures[eid][arm] + exposures[eid][control[eid]]
            last = model.get(key)
            if last is None or (new < last[-1][0] and (new <= last[-1][0] * 0.98 or aged)):
                model.setdefault(key, []).append((new, exp))
        if aged:
            await db.execute(
                "UPDATE sequential_history SET at = at + interval '1 day' "
                "WHERE at < now() - interval '12 hours'"
            )
    assert await _points(db) == model
    assert await db.fetchval("SELECT count(*) FROM sequential_history") == sum(
        map(len, model.values())
    )


# Their link to the experiment (migration 0009): checked once per statement, deleted with it.

_STATE = (
    "INSERT INTO sequential_state (experiment_id, metric, arm_index, kind, p_value) "
    "SELECT $1, 'reward', a, 'two_sided', 0.5 FROM unnest($2::smallint[]) AS a"
)
_HISTORY = (
    "INSERT INTO sequential_history (experiment_id, metric, arm_index, kind, p_value, exposures) "
    "SELECT $1, 'reward', a, 'two_sided', 0.5, 0 FROM unnest($2::smallint[]) AS a"
)


async def _rows(db: asyncpg.Connection, experiment_id: int) -> tuple[int, int]:
    state = await db.fetchval(
        "SELECT count(*) FROM sequential_state WHERE experiment_id = $1", experiment_id
    )
    history = await db.fetchval(
        "SELECT count(*) FROM sequential_history WHERE experiment_id = $1", experiment_id
    )
    return state, history


@pytest.mark.parametrize("statement", [_STATE, _HISTORY], ids=["state", "history"])
async def test_a_row_of_a_missing_experiment_fails_the_statement(
    db: asyncpg.Connection, statement: str
) -> None:
    alive = await _experiment(db, "alive", 3, control=0)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute(
            "WITH x AS ("
            + statement.replace("SELECT $1,", "SELECT CASE WHEN a = 2 THEN $1 + 1000 ELSE $1 END,")
            + " RETURNING 1) SELECT count(*) FROM x",
            alive,
            [1, 2],
        )
    assert await _rows(db, alive) == (0, 0)
    await db.execute(statement, alive, [1, 2])


async def test_deleting_an_experiment_deletes_its_state_and_history(
    db: asyncpg.Connection,
) -> None:
    gone = await _experiment(db, "gone", 3, control=0)
    kept = await _experiment(db, "kept", 3, control=0)
    for eid in (gone, kept):
        await _merge(db, [((eid, "reward", a, "two_sided"), 0.5) for a in (1, 2)])
    assert await _rows(db, gone) == await _rows(db, kept) == (2, 2)
    await db.execute("DELETE FROM experiments WHERE id = $1", gone)
    assert (await _rows(db, gone), await _rows(db, kept)) == ((0, 0), (2, 2))


async def test_a_delete_waits_for_an_open_merge_and_then_removes_its_rows(
    db: asyncpg.Connection, migrated: Services
) -> None:
    eid = await _experiment(db, "race", 2, control=0)
    await delete_waits_for_open_write(
        migrated.database_url,
        eid,
        lambda conn: conn.fetch(Q["sequential_merge"], eid, ["reward"], [1], ["two_sided"], [0.5]),
    )
    assert await _rows(db, eid) == (0, 0)  # no orphan rows


async def test_a_merge_behind_an_open_delete_fails_once_the_delete_commits(
    db: asyncpg.Connection, migrated: Services
) -> None:
    eid = await _experiment(db, "race", 2, control=0)
    await write_behind_open_delete_fails(
        migrated.database_url,
        eid,
        lambda conn: conn.fetch(
            Q["sequential_merge_many"], [eid], ["reward"], [1], ["two_sided"], [0.5]
        ),
    )
    assert await _rows(db, eid) == (0, 0)
    # a merge that starts after the delete skips the experiment, as before
    assert await db.fetch(Q["sequential_merge"], eid, ["reward"], [1], ["two_sided"], [0.5]) == []
