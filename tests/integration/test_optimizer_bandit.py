"""Thompson reallocation end to end: simulated Bernoulli traffic through the HTTP API, the
leader-elected optimizer moving weights, floor and change cap at every allocation row."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from croupier.app import create_app
from croupier.settings import Settings
from tests.integration.helpers import auth, experiment_body
from tests.integration.optimizer_sim import (
    OPTIMIZER_INTERVAL_S,
    Traffic,
    bernoulli,
    create_and_start,
    optimizer_settings,
    run_round,
)

MAX_CHANGE = 0.1


async def _bandit(
    settings: Settings,
    keys: dict[str, str],
    rates: list[float],
    *,
    rounds: int,
    per_round: int,
    seed: int,
) -> tuple[Traffic, list[dict[str, Any]], float]:
    """Run a thompson experiment over `rates`; return traffic, allocation history, duration."""
    s = optimizer_settings(settings, optimizer_max_change_per_cycle=MAX_CHANGE)
    names = [f"arm{i}" for i in range(len(rates))]
    rng = np.random.default_rng(seed)
    traffic = Traffic()
    started = time.monotonic()
    async with AsyncTestClient(app=create_app(s)) as client:
        body = experiment_body(key="bandit", policy="thompson", arms=len(rates), auto_stop=False)
        await create_and_start(client, keys["admin"], body)
        reward = bernoulli(dict(zip(names, rates, strict=True)), rng)
        for r in range(rounds):
            units = [f"u{r}-{i}" for i in range(per_round)]
            await run_round(client, keys["decide"], "bandit", units, reward, traffic)
            await asyncio.sleep(OPTIMIZER_INTERVAL_S * 1.2)
        h = auth(keys["admin"])
        history = (await client.get("/v1/experiments/bandit/allocations", headers=h)).json()
    return traffic, history, time.monotonic() - started


def _check_history(history: list[dict[str, Any]], floor: float) -> int:
    """Floor and change cap hold at every allocation row; returns the optimizer's row count."""
    optimizer_rows = 0
    for before, after in itertools.pairwise(history):
        w = after["weights"]
        assert abs(sum(w.values()) - 1.0) < 1e-9, after
        assert min(w.values()) >= floor - 1e-9, after
        if after["reason"].startswith("thompson"):
            optimizer_rows += 1
            moved = max(abs(w[a] - before["weights"][a]) for a in w)
            assert moved <= MAX_CHANGE + 1e-9, (before, after)
            assert moved >= 0.001 - 1e-12, (before, after)
    return optimizer_rows


def _regret(traffic: Traffic, rates: list[float]) -> tuple[float, float]:
    """Cumulative expected regret of the traffic served, and of uniform allocation."""
    best = max(rates)
    per_arm = {f"arm{i}": r for i, r in enumerate(rates)}
    served = [a for a, why in zip(traffic.arms, traffic.reasons, strict=True) if why == "allocated"]
    regret = sum(best - per_arm[a] for a in served)
    uniform = len(served) * (best - sum(rates) / len(rates))
    return regret, uniform


@pytest.mark.simulation
async def test_three_arm_bandit_moves_traffic_to_the_best_arm(
    settings: Settings, keys: dict[str, str]
) -> None:
    """With rates 0.04/0.05/0.07 the best arm ends above 0.7 of the traffic and the regret is
    at most half that of uniform allocation, floor and cap holding at every row."""
    rates = [0.04, 0.05, 0.07]
    traffic, history, duration_s = await _bandit(
        settings, keys, rates, rounds=32, per_round=300, seed=7
    )
    rows = _check_history(history, floor=0.01)
    final = history[-1]["weights"]
    regret, uniform = _regret(traffic, rates)
    print(f"\n3-arm: {len(traffic.arms)} decisions in {duration_s:.1f} s, {rows} reallocations, "
          f"final weights {final}, regret {regret:.1f} vs uniform {uniform:.1f} "
          f"(ratio {regret / uniform:.3f})")
    assert final["arm2"] > 0.7
    assert regret <= 0.5 * uniform


@pytest.mark.simulation
async def test_ten_arm_bandit_finds_the_best_arm(settings: Settings, keys: dict[str, str]) -> None:
    """With ten arms (one at 0.10, the rest 0.02-0.06) the best arm ends above 0.7 of the
    traffic and the regret is at most half that of uniform allocation."""
    rates = [0.02, 0.03, 0.04, 0.05, 0.04, 0.03, 0.05, 0.06, 0.04, 0.10]
    traffic, history, duration_s = await _bandit(
        settings, keys, rates, rounds=25, per_round=400, seed=11
    )
    rows = _check_history(history, floor=0.01)
    final = history[-1]["weights"]
    regret, uniform = _regret(traffic, rates)
    print(f"\n10-arm: {len(traffic.arms)} decisions in {duration_s:.1f} s, {rows} reallocations, "
          f"best arm weight {final['arm9']:.3f}, regret {regret:.1f} vs uniform {uniform:.1f} "
          f"(ratio {regret / uniform:.3f})")
    assert final["arm9"] > 0.7
    assert regret <= 0.5 * uniform
