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
