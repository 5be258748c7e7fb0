"""Traffic simulation through the HTTP API, shared by the optimizer's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from litestar.testing import AsyncTestClient

from croupier.settings import Settings
from tests.integration.helpers import auth

OPTIMIZER_INTERVAL_S = 0.2


def optimizer_settings(settings: Settings, **more: Any) -> Settings:
    """The test settings with the optimizer on and a short interval."""
    return settings.replace(
        optimizer_enabled=True, optimizer_interval_s=OPTIMIZER_INTERVAL_S, **more
    )


@dataclass
class Traffic:
    """What a simulation served: per decision the arm, and the running totals."""

    arms: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)


async def create_and_start(
    client: AsyncTestClient[Any], admin_key: str, body: dict[str, Any]
) -> None:
    """POST the experiment and start it."""
    h = auth(admin_key)
    r = await client.post("/v1/experiments", json=body, headers=h)
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/experiments/{body['key']}/start", headers=h)
    assert r.status_code == 200, r.text


async def run_round(
    client: AsyncTestClient[Any],
    decide_key: str,
    experiment: str,
    units: list[str],
    reward: Callable[[str, str], dict[str, float]],
    traffic: Traffic,
    *,
    concurrency: int = 50,
) -> None:
    """Decide for each unit, then post every unit's rewards (metric → value) in one batch."""
    h = auth(decide_key)
    items: list[dict[str, Any]] = []
    for start in range(0, len(units), concurrency):
        chunk = units[start : start + concurrency]
        responses = await asyncio.gather(
            *[
                client.post("/v1/decide", json={"experiment": experiment, "unit_id": u}, headers=h)
                for u in chunk
            ]
        )
        for unit, r in zip(chunk, responses, strict=True):
            assert r.status_code == 200, r.text
            d = r.json()
            traffic.arms.append(d["arm"])
            traffic.reasons.append(d["reason"])
            traffic.units.append(unit)
            if d["reason"] == "allocated":  # a sticky repeat shares the first decision_id
                for metric, value in reward(unit, d["arm"]).items():
                    items.append(
                        {"decision_id": d["decision_id"], "value": value, "metric": metric}
                    )
    for start in range(0, len(items), 1000):
        r = await client.post("/v1/rewards", json=items[start : start + 1000], headers=h)
        assert r.status_code == 202, r.text


def bernoulli(
    rates: dict[str, float], rng: np.random.Generator, metric: str = "reward"
) -> Callable[[str, str], dict[str, float]]:
    """A binary reward with a fixed success rate per arm."""

    def draw(_unit: str, arm: str) -> dict[str, float]:
        return {metric: float(rng.random() < rates[arm])}

    return draw


async def explain(client: AsyncTestClient[Any], admin_key: str, db: Any, key: str) -> str:
    """What an unexpected outcome of a simulation needs to be diagnosed: the results document,
    the stored counts next to a recount of the logs, the sequential p-values over time and the
    audit trail of experiment `key`."""
    results = (await client.get(f"/v1/experiments/{key}/results", headers=auth(admin_key))).json()
    lines = [f"results: {results}"]
    queries = {
        "arm_stats": "SELECT arm_index, exposures, expected_exposures FROM arm_stats s "
        "JOIN experiments e ON e.id = s.experiment_id WHERE e.key = $1 ORDER BY 1",
        "decisions recount": "SELECT arm_index, moved, count(*) FROM decisions d "
        "JOIN experiments e ON e.id = d.experiment_id WHERE e.key = $1 AND d.counted "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        "metric_stats": "SELECT metric, arm_index, n, sum FROM metric_stats s "
        "JOIN experiments e ON e.id = s.experiment_id WHERE e.key = $1 ORDER BY 1, 2",
        "rewards recount": "SELECT metric, arm_index, count(*), sum(value) FROM rewards r "
        "JOIN experiments e ON e.id = r.experiment_id WHERE e.key = $1 AND r.counted "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        "sequential_history": "SELECT h.at, h.metric, h.arm_index, h.kind, h.p_value, "
        "h.exposures FROM sequential_history h JOIN experiments e ON e.id = h.experiment_id "
        "WHERE e.key = $1 ORDER BY h.at",
        "audit": "SELECT at, action, details FROM audit_log WHERE experiment_key = $1 "
        "ORDER BY id",
    }
    for name, sql in queries.items():
        rows = await db.fetch(sql, key)
        lines.append(f"{name}:")
        lines += [f"  {tuple(r.values())}" for r in rows]
    return "\n".join(lines)
