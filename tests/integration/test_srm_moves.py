"""Sticky units that move arm when weights change keep the sample-ratio test exact."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body


async def _set_weights(db: asyncpg.Connection, key: str, weights: list[float]) -> None:
    """Change the allocation the way the optimizer does (new row, new version)."""
    exp_id = await db.fetchval("SELECT id FROM experiments WHERE key = $1", key)
    async with db.transaction():
        await db.execute(
            "INSERT INTO allocations (experiment_id, weights, reason) VALUES ($1, $2, 'test')",
            exp_id, weights,
        )
        await db.execute(
            "UPDATE experiments SET version = nextval('change_version') WHERE id = $1", exp_id
        )


async def test_returning_units_of_a_growing_rollout_do_not_trip_srm(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """When a rollout's share grows, returning units that move to the candidate count as
    exposures there with an expected exposure of one, so a healthy rollout shows no SRM and
    expected exposures still sum to the exposures."""
    admin, decide = auth(keys["admin"]), auth(keys["decide"])
    r = await client.post("/v1/experiments", json=experiment_body("roll", "rollout"), headers=admin)
    assert r.status_code == 201, r.text
    await client.post("/v1/experiments/roll/start", headers=admin)
    await _set_weights(db, "roll", [0.9, 0.1])
    await asyncio.sleep(0.5)  # the feed polls every 0.2 s in tests

    async def visit(units: range) -> list[dict[str, Any]]:
        out = []
        for u in units:
            r = await client.post(
                "/v1/decide", json={"experiment": "roll", "unit_id": f"u{u}"}, headers=decide
            )
            out.append(r.json())
        return out

    await visit(range(3000))
    await _set_weights(db, "roll", [0.5, 0.5])
    await asyncio.sleep(0.5)
    second = await visit(range(4000))  # 3000 returning units and 1000 new ones
    moved = sum(1 for d in second[:3000] if d["arm"] == "arm1" and d["reason"] == "allocated")
    assert moved > 900  # about (0.5 - 0.1) * 3000 units moved to the candidate
    await asyncio.sleep(0.3)
    results = (await client.get("/v1/experiments/roll/results", headers=admin)).json()
    exposures = [a["exposures"] for a in results["arms"]]
    expected = [a["expected_exposures"] for a in results["arms"]]
    assert abs(sum(expected) - sum(exposures)) < 1e-6
    assert results["srm"]["flag"] is False, results["srm"]
    assert results["srm"]["p_value"] > 0.001
    stored_moves = await db.fetchval("SELECT count(*) FROM decisions WHERE moved")
    assert stored_moves == moved
