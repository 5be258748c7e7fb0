"""How long one optimizer cycle takes over 1,000 running experiments (benchmark, off by
default: `pytest -m benchmark -s`)."""

from __future__ import annotations

import time

import asyncpg
import msgspec
import numpy as np
import pytest

from croupier.admin.schemas import ExperimentCreate
from croupier.optimizer.loop import Optimizer
from croupier.runtime import Runtime
from croupier.settings import Settings
from tests.integration.helpers import experiment_body

pytestmark = pytest.mark.benchmark

N_EXPERIMENTS = 1000


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    """Benchmarks are off by default: they run only under `-m benchmark`."""
    if "benchmark" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("benchmark: run with `pytest -m benchmark -s`")


@pytest.mark.parametrize("policy", ["thompson", "fixed"])
async def test_one_cycle_over_a_thousand_experiments(
    settings: Settings, db: asyncpg.Connection, policy: str
) -> None:
    """One cycle over 1,000 running experiments (3 arms, past burn-in, one guardrail) is timed
    and reported, cold (first cycle) and warm."""
    rt = Runtime(settings)
    await rt.start()
    try:
        metrics = [
            {"name": "reward", "type": "binary", "direction": "maximize"},
            {"name": "errors", "type": "binary", "direction": "minimize", "max_degradation": 0.01},
        ]
        for i in range(N_EXPERIMENTS):
            body = experiment_body(
                key=f"e{i}", policy=policy, arms=3, metrics=metrics, auto_stop=False
            )
            await rt.experiments.create(msgspec.convert(body, ExperimentCreate), "bench")
        await db.execute(
            "UPDATE experiments SET status = 'running', started_at = now(), "
            "stage_started_at = now()"
        )
        await db.execute(
            "UPDATE arm_stats SET exposures = 1000 + arm_index, "
            "expected_exposures = 1000 + arm_index"
        )
        await db.execute(
            "UPDATE metric_stats SET n = 50 + arm_index * 3, sum = 50 + arm_index * 3, "
            "sum_sq = 50 + arm_index * 3"
        )
        optimizer = Optimizer(
            settings, pool=rt.pool, redis=rt.redis, redis_keys=rt.redis_keys, cache=rt.cache,
            rng=np.random.default_rng(0),
        )
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            report = await optimizer.run_cycle()
            timings.append(time.perf_counter() - started)
            assert report.experiments == N_EXPERIMENTS and report.failures == 0
        print(
            f"\n{policy}: one cycle over {N_EXPERIMENTS} experiments: "
            + ", ".join(f"{t:.2f} s" for t in timings)
            + f" (changes in the last: {report.changes})"
        )
    finally:
        await rt.stop()
