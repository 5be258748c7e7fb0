"""Sufficient statistics equal a full recount after a mixed, concurrent workload."""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from croupier.app import create_app
from croupier.settings import Settings
from tests.integration.helpers import auth
from tests.recount import assert_stats_equal_recount

pytestmark = pytest.mark.slow

EXPERIMENTS = {
    "fixed-sticky": {"policy": "fixed", "arms": 3},
    "ts-free": {"policy": "thompson", "arms": 4},
    "ts-sticky": {"policy": "thompson", "arms": 2, "sticky": True},
    "roll": {"policy": "rollout", "arms": 2},
}


def _body(key: str, spec: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "policy": spec["policy"],
        "arms": [
            {"key": f"a{i}", "control": i == 0, "config": {"i": i}} for i in range(spec["arms"])
        ],
        "metrics": [
            {"name": "reward", "type": "binary", "direction": "maximize"},
            {"name": "cost", "type": "continuous", "direction": "minimize", "max_degradation": 1.0},
        ],
    }
    if "sticky" in spec:
        body["sticky"] = spec["sticky"]
    return body


async def _reweight(db: asyncpg.Connection, key: str, weights: list[float]) -> None:
    """Change an experiment's allocation the way the optimizer does (new row + new version)."""
    exp_id = await db.fetchval("SELECT id FROM experiments WHERE key = $1", key)
    async with db.transaction():
        await db.execute(
            "INSERT INTO allocations (experiment_id, weights, reason) VALUES ($1, $2, 'test')",
            exp_id,
            weights,
        )
        await db.execute(
            "UPDATE experiments SET version = nextval('change_version') WHERE id = $1", exp_id
        )


async def test_stats_equal_recount_after_concurrent_mixed_load(
    client: AsyncTestClient[Any], keys: dict[str, str], settings: Settings, db: asyncpg.Connection
) -> None:
    """≥ 20k decisions and rewards from many concurrent clients on two processes, with sticky
    repeats, duplicate and conflicting rewards and allocation changes mid-run, leave
    arm_stats and metric_stats exactly equal to a recount of decisions and rewards."""
    admin, decide = auth(keys["admin"]), auth(keys["decide"])
    for key, spec in EXPERIMENTS.items():
        assert (
            await client.post("/v1/experiments", json=_body(key, spec), headers=admin)
        ).status_code == 201
        assert (await client.post(f"/v1/experiments/{key}/start", headers=admin)).status_code == 200

    rng = random.Random(7)
    total_decisions = 20_000
    workers = 40
    per_worker = total_decisions // workers
    acknowledged: dict[tuple[str, str], float] = {}
    counts = {"decisions": 0, "reward_items": 0, "conflicts": 0, "duplicates": 0}

    async with AsyncTestClient(app=create_app(settings)) as other:
        clients = [client, other]

        async def worker(w: int) -> None:
            c = clients[w % 2]
            pending: list[dict[str, Any]] = []
            for i in range(per_worker):
                key = rng.choice(list(EXPERIMENTS))
                unit = f"u{rng.randrange(3000)}"  # repeats: sticky units come back
                r = await c.post(
                    "/v1/decide", json={"experiment": key, "unit_id": unit}, headers=decide
                )
                assert r.status_code == 200, r.text
                counts["decisions"] += 1
                d = r.json()
                roll = rng.random()
                if roll < 0.9:
                    # values derive from the id, so a sticky unit's repeats send identical values
                    h = zlib.crc32(d["decision_id"].encode())
                    pending.append({"decision_id": d["decision_id"], "value": float(h % 3 == 0)})
                    pending.append(
                        {
                            "decision_id": d["decision_id"],
                            "value": (h % 500) / 100,
                            "metric": "cost",
                        }
                    )
                if len(pending) >= 20 or i == per_worker - 1:
                    if rng.random() < 0.1 and acknowledged:  # resend something: a duplicate
                        (did, metric), value = rng.choice(list(acknowledged.items()))
                        pending.append({"decision_id": did, "value": value, "metric": metric})
                    items, pending = pending, []
                    if not items:
                        continue
                    # other clients may hold the same sticky decision id: drop in-list repeats
                    seen: dict[tuple[str, str], float] = {}
                    for it in items:
                        seen.setdefault(
                            (it["decision_id"], it.get("metric", "reward")), it["value"]
                        )
                    items = [
                        {"decision_id": k[0], "metric": k[1], "value": v} for k, v in seen.items()
                    ]
                    r = await c.post("/v1/rewards", json=items, headers=decide)
                    if r.status_code == 409:
                        counts["conflicts"] += 1
                        continue
                    assert r.status_code == 202, r.text
                    body = r.json()
                    assert body["accepted"] + body["duplicates"] == len(items)
                    counts["duplicates"] += body["duplicates"]
                    counts["reward_items"] += len(items)
                    for it in items:
                        acknowledged.setdefault((it["decision_id"], it["metric"]), it["value"])
                if w == 0 and i == per_worker // 2:
                    await _reweight(db, "ts-free", [0.1, 0.2, 0.3, 0.4])
                    await _reweight(db, "roll", [0.5, 0.5])
                if w == 1 and i % 97 == 0 and acknowledged:  # a deliberate conflict
                    (did, metric), value = rng.choice(list(acknowledged.items()))
                    r = await c.post(
                        "/v1/rewards",
                        json={
                            "decision_id": did,
                            "metric": metric,
                            "value": value + 1 if metric == "cost" else 1 - value,
                        },
                        headers=decide,
                    )
                    assert r.status_code == 409, r.text

        await asyncio.gather(*[worker(w) for w in range(workers)])
    await client.get("/healthz")
    await asyncio.sleep(0.3)  # the first app's writer flushes every 20 ms
    assert counts["decisions"] >= 20_000 and counts["reward_items"] >= 20_000

    # every acknowledged reward is stored with its value
    stored = {
        (r["decision_id"], r["metric"]): r["value"]
        for r in await db.fetch("SELECT decision_id, metric, value FROM rewards")
    }
    assert stored == acknowledged

    for key in EXPERIMENTS:
        await assert_stats_equal_recount(db, key)
    # sticky experiments: one counted decision per (unit, arm)
    dupes = await db.fetchval(
        """SELECT count(*) FROM (SELECT experiment_id, unit_id, arm_index FROM decisions d
           JOIN experiments e ON e.id = d.experiment_id WHERE e.sticky AND d.counted
           GROUP BY 1, 2, 3 HAVING count(*) > 1) x"""
    )
    assert dupes == 0
    print(f"\nworkload: {counts}")
