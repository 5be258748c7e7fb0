"""Staged rollouts end to end through the HTTP API with the optimizer loop running: a harmful
candidate is rolled back, a healthy one walks every stage to 100 %, and units only ever move
control → candidate."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from croupier.app import create_app
from croupier.settings import Settings
from tests.integration.helpers import auth, experiment_body
from tests.integration.optimizer_sim import (
    OPTIMIZER_INTERVAL_S,
    Traffic,
    create_and_start,
    explain,
    optimizer_settings,
    run_round,
)

METRICS = [
    {"name": "reward", "type": "binary", "direction": "maximize"},
    {"name": "errors", "type": "binary", "direction": "minimize", "max_relative_degradation": 0.1},
]


def _rates(error_rates: dict[str, float], rng: np.random.Generator) -> Any:
    def draw(_unit: str, arm: str) -> dict[str, float]:
        return {
            "reward": float(rng.random() < 0.1),
            "errors": float(rng.random() < error_rates[arm]),
        }

    return draw


def _assert_monotone(traffic: Traffic, *, control: str, allow_rollback: bool) -> int:
    """No unit is served the candidate and later the control; returns how many units moved."""
    arms_of: dict[str, list[str]] = {}
    for unit, arm in zip(traffic.units, traffic.arms, strict=True):
        arms_of.setdefault(unit, []).append(arm)
    moved = 0
    for unit, arms in arms_of.items():
        first_candidate = next((i for i, a in enumerate(arms) if a != control), None)
        if first_candidate is None:
            continue
        if first_candidate > 0:
            moved += 1
        if not allow_rollback:
            assert all(a != control for a in arms[first_candidate:]), (unit, arms)
    return moved


async def test_candidate_with_twice_the_error_rate_is_rolled_back(
    settings: Settings, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """A candidate with twice the control's error rate (5 % → 10 %, tolerance 10 % relative)
    is rolled back to the control, and the exposures it took are reported."""
    s = optimizer_settings(settings)
    # quick early stages; the 25 % and 50 % stages each wait for 3 000 exposures
    stages = [{"share": x, "min_duration_s": 0, "min_exposures": n}
              for x, n in ((0.01, 200), (0.05, 200), (0.25, 3000), (0.5, 3000), (1.0, 3000))]
    body = experiment_body(key="ro", policy="rollout", arms=2, metrics=METRICS, stages=stages)
    rng = np.random.default_rng(3)
    traffic = Traffic()
    reward = _rates({"arm0": 0.05, "arm1": 0.10}, rng)
    async with AsyncTestClient(app=create_app(s)) as client:
        await create_and_start(client, keys["admin"], body)
        h = auth(keys["admin"])
        status, stage = "running", 0
        for r in range(60):
            await run_round(client, keys["decide"], "ro", [f"u{r}-{i}" for i in range(250)],
                            reward, traffic)
            await asyncio.sleep(OPTIMIZER_INTERVAL_S * 1.2)
            exp = (await client.get("/v1/experiments/ro", headers=h)).json()
            status, stage = exp["status"], max(stage, exp["stage"])
            if status != "running":
                break
        assert status == "rolled_back", await explain(client, keys["admin"], db, "ro")
        assert exp["weights"] == {"arm0": 1.0, "arm1": 0.0}
        d = (await client.post("/v1/decide", json={"experiment": "ro", "unit_id": "late"},
                               headers=auth(keys["decide"]))).json()
        assert (d["arm"], d["reason"]) == ("arm0", "rolled_back")
        audit = await db.fetchrow(
            "SELECT details FROM audit_log WHERE experiment_key = 'ro' AND action = 'rollback'"
        )
        assert audit is not None and "errors" in audit["details"], await explain(
            client, keys["admin"], db, "ro"
        )
    exposures = await db.fetch(
        "SELECT arm_index, exposures FROM arm_stats s JOIN experiments e ON e.id = s.experiment_id "
        "WHERE e.key = 'ro' ORDER BY arm_index"
    )
    print(f"\nrolled back at stage {stage + 1} after {exposures[0]['exposures']} control and "
          f"{exposures[1]['exposures']} candidate exposures")
    _assert_monotone(traffic, control="arm0", allow_rollback=True)


@pytest.mark.simulation
async def test_healthy_rollout_walks_every_stage_to_full_monotonically(
    settings: Settings, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """A candidate identical to the control advances through every stage to share 1.0 and
    completes with the candidate as winner; a returning cohort of units only ever moves
    control → candidate."""
    s = optimizer_settings(settings)
    stages = [{"share": x, "min_duration_s": 0.3, "min_exposures": 100}
              for x in (0.01, 0.05, 0.25, 0.5, 1.0)]
    body = experiment_body(
        key="ok", policy="rollout", arms=2, metrics=METRICS, stages=stages,
        confidence_level=0.999,
    )
    rng = np.random.default_rng(5)
    traffic = Traffic()
    reward = _rates({"arm0": 0.05, "arm1": 0.05}, rng)
    cohort = [f"returning-{i}" for i in range(150)]
    seen_shares: list[float] = []
    async with AsyncTestClient(app=create_app(s)) as client:
        await create_and_start(client, keys["admin"], body)
        h = auth(keys["admin"])
        for r in range(60):
            units = cohort + [f"new{r}-{i}" for i in range(150)]
            await run_round(client, keys["decide"], "ok", units, reward, traffic)
            await asyncio.sleep(OPTIMIZER_INTERVAL_S * 1.2)
            exp = (await client.get("/v1/experiments/ok", headers=h)).json()
            seen_shares.append(exp["weights"]["arm1"])
            if exp["status"] != "running":
                break
        assert (exp["status"], exp["winner"]) == ("completed", "arm1"), await explain(
            client, keys["admin"], db, "ok"
        )
        assert exp["weights"] == {"arm0": 0.0, "arm1": 1.0}
        history = (await client.get("/v1/experiments/ok/allocations", headers=h)).json()
    shares = [row["weights"]["arm1"] for row in history]
    assert shares == sorted(shares)
    assert {0.01, 0.05, 0.25, 0.5, 1.0} <= set(shares)
    moved = _assert_monotone(traffic, control="arm0", allow_rollback=False)
    returning_moved = sum(
        1 for u in cohort
        if next(a for uu, a in zip(traffic.units, traffic.arms, strict=True) if uu == u) == "arm0"
    )
    print(f"\nhealthy rollout: {len(history) - 1} allocation changes over {r + 1} rounds; "
          f"{moved} units moved control → candidate ({returning_moved} of the returning cohort "
          "started on the control); none moved back")
    assert moved > 0
    stage_rows = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE experiment_key = 'ok' AND action = 'stage'"
    )
    assert stage_rows == 4
