"""The oracle shared by every test that checks the sufficient statistics: a full recount."""

from __future__ import annotations

from typing import Any

import pytest

# Exposures per arm from the decision log.
_EXPOSURES = (
    "SELECT arm_index, count(*) n FROM decisions WHERE experiment_id = $1 AND counted GROUP BY 1"
)
# Expected exposures: the weights of the allocation each counted decision was made under, or one
# on its own arm for a sticky unit that moved (docs/statistics.md, SRM).
_EXPECTED = """
    SELECT w.ord - 1 AS arm,
           sum(CASE WHEN d.moved THEN (w.ord - 1 = d.arm_index)::int ELSE w.weight END) AS e
    FROM decisions d JOIN allocations a ON a.id = d.allocation_id,
         unnest(a.weights) WITH ORDINALITY w(weight, ord)
    WHERE d.experiment_id = $1 AND d.counted GROUP BY 1"""
_METRICS = """
    SELECT metric, arm_index, count(*) n, sum(value) s, sum(value * value) q
    FROM rewards WHERE experiment_id = $1 AND counted GROUP BY 1, 2"""


async def assert_stats_equal_recount(conn: Any, experiment_key: str) -> None:
    """arm_stats and metric_stats of one experiment equal a recount of decisions and rewards."""
    exp_id = await conn.fetchval("SELECT id FROM experiments WHERE key = $1", experiment_key)
    arms = await conn.fetch(
        "SELECT arm_index, exposures, expected_exposures FROM arm_stats WHERE experiment_id = $1",
        exp_id,
    )
    recount = {r["arm_index"]: r["n"] for r in await conn.fetch(_EXPOSURES, exp_id)}
    expected = {r["arm"]: r["e"] for r in await conn.fetch(_EXPECTED, exp_id)}
    for r in arms:
        assert r["exposures"] == recount.get(r["arm_index"], 0), (experiment_key, dict(r))
        assert r["expected_exposures"] == pytest.approx(
            expected.get(r["arm_index"], 0.0), abs=1e-6
        ), (experiment_key, dict(r))
    assert sum(r["expected_exposures"] for r in arms) == pytest.approx(
        sum(recount.values()), abs=1e-6
    )
    stored = {
        (r["metric"], r["arm_index"]): (r["n"], r["sum"], r["sum_sq"])
        for r in await conn.fetch(
            "SELECT metric, arm_index, n, sum, sum_sq FROM metric_stats WHERE experiment_id = $1",
            exp_id,
        )
    }
    recounted = {
        (r["metric"], r["arm_index"]): (r["n"], r["s"], r["q"])
        for r in await conn.fetch(_METRICS, exp_id)
    }
    assert set(recounted) <= set(stored), experiment_key
    for key, (n, s, q) in stored.items():
        rn, rs, rq = recounted.get(key, (0, 0.0, 0.0))
        assert n == rn, (experiment_key, key)
        assert s == pytest.approx(rs, rel=1e-9, abs=1e-9), (experiment_key, key)
        assert q == pytest.approx(rq, rel=1e-9, abs=1e-9), (experiment_key, key)
