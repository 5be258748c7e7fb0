"""The sequential p-value history (migrations 0005, 0006): which merged p-values become points.

The rule, per stored row of a `sequential_merge` statement: a point when the comparison has none
yet, or when the stored value is below the last point's and fell by 2 % or more or the last
point is a minute old; its exposures are the arm's plus the control's. The triggers apply it to a
whole statement at once; these tests check it row by row against a model of the rule, for
statements of one row and of many, inserts and updates (ON CONFLICT) mixed.
"""

from __future__ import annotations

import random

import asyncpg

from croupier.storage.queries import Q

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
