# Docstrings use the Greek alpha on purpose.
"""Rollout stage changes, hash monotonicity, rollback weights, and the false-rollback rate
of healthy rollouts simulated with the pure statistics and recommendation code."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from croupier.decision.assign import unit_hash
from croupier.model import Arm, ExperimentSpec, Metric, Stage
from croupier.optimizer.recommend import Recommendation, recommend
from croupier.optimizer.rollout import StageChange, is_monotone, stage_change, stage_weights
from croupier.optimizer.tick import one_hot, without_arms
from croupier.stats.report import analyze, guardrail
from croupier.stats.sequential import SequentialState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHARES = (0.01, 0.05, 0.25, 0.5, 1.0)
STAGES = [Stage(share=s, min_duration_s=60, min_exposures=100) for s in SHARES]


SPEC = ExperimentSpec(
    key="r",
    policy="rollout",
    sticky=True,
    arms=[Arm(key="control", control=True, weight=0.99), Arm(key="candidate", weight=0.01)],
    metrics=[
        Metric(name="reward", type="binary", direction="maximize"),
        Metric(name="errors", type="binary", direction="minimize", max_relative_degradation=0.1),
    ],
    stages=STAGES,
)


def _recommend(index: int, *, after_s: float, stage_exposures: int) -> Recommendation:
    """The recommendation for a rollout at `index` with no evidence of any difference."""
    exposures = np.array([500, 500])
    primary = analyze(
        metric_type="binary", direction="maximize", alpha=0.05, control=0,
        exposures=exposures, expected_exposures=exposures, count=exposures,
        sums=[50, 50], sums_sq=[50, 50], sequential_states=None,
        rng=np.random.default_rng(0), draws=500,
    )
    checks = guardrail(
        metric_type="binary", direction="minimize", alpha=0.05, control=0, count=exposures,
        sums=[25, 25], sums_sq=[25, 25], sequential_states=None, max_relative_degradation=0.1,
    )
    return recommend(
        spec=SPEC, status="running", primary=primary, guardrails={"errors": checks},
        exposures=[500, 500], stage_index=index, stage_started_at=T0, started_at=T0,
        now=T0 + timedelta(seconds=after_s), stage_exposures=stage_exposures,
    )


def test_stage_weights_put_the_share_on_the_candidate() -> None:
    """The candidate (the non-control arm) gets the share, the control the rest."""
    assert stage_weights(0.25, control_index=0) == [0.75, 0.25]
    assert stage_weights(0.25, control_index=1) == [0.25, 0.75]
    with pytest.raises(ValueError, match="between 0 and 1"):
        stage_weights(1.5, control_index=0)


def test_stage_change_only_steps_forward_by_one() -> None:
    """Only the stage right after the current one is taken; stale, repeated, skipping or
    out-of-range proposals are refused."""
    step = stage_change(STAGES, 1, 2, control_index=0)
    assert step is not None
    assert (step.stage_index, step.share, step.weights) == (2, 0.25, [0.75, 0.25])
    assert stage_change(STAGES, None, 1, control_index=1) == StageChange(1, 0.05, [0.05, 0.95])
    for current, proposed in ((2, 2), (2, 1), (1, 3), (4, 5), (2, None)):
        assert stage_change(STAGES, current, proposed, control_index=0) is None


def test_stages_wait_for_duration_and_exposures_then_advance_and_complete() -> None:
    """The recommendation the optimizer follows holds a stage until both its duration and its
    exposures are met, then advances one stage; the met last stage stops with the candidate."""
    assert _recommend(0, after_s=59, stage_exposures=1000).next_stage is None
    waiting = _recommend(0, after_s=600, stage_exposures=99)
    assert (waiting.action, waiting.next_stage) == ("continue", None)
    advance = _recommend(1, after_s=60, stage_exposures=100)
    assert (advance.action, advance.next_stage) == ("continue", 2)
    done = _recommend(4, after_s=60, stage_exposures=100)
    assert (done.action, done.arm) == ("stop", "candidate")


def test_walking_the_stages_is_monotone() -> None:
    """Following the recommendation through every stage publishes a non-decreasing sequence of
    shares ending at 1."""
    shares = [STAGES[0].share]
    index = 0
    for _ in range(10):
        rec = _recommend(index, after_s=60, stage_exposures=100)
        step = stage_change(STAGES, index, rec.next_stage, control_index=0)
        if step is None:
            assert rec.action == "stop"
            break
        shares.append(step.share)
        index = step.stage_index
    assert shares == list(SHARES)
    assert is_monotone(shares) and not is_monotone([0.05, 0.01])


def test_hash_assignment_moves_units_only_toward_the_candidate() -> None:
    """With u = hash(salt, unit) and candidate iff u < share, the candidate's units at any
    stage are a subset of its units at every later stage."""
    salt = b"0123456789abcdef"
    units = [f"user-{i}" for i in range(20_000)]
    positions = np.array([unit_hash(salt, u) for u in units])
    previous = np.zeros(len(units), dtype=bool)
    for stage in STAGES:
        candidate = positions < stage.share
        assert not np.any(previous & ~candidate)  # nobody moves candidate → control
        assert abs(candidate.mean() - stage.share) < 4 * math.sqrt(0.25 / len(units)) + 1e-9
        previous = candidate


def test_rollback_weights_share_the_freed_weight_equally() -> None:
    """A rolled-back arm gets 0 and the others each gain an equal part of its weight."""
    assert without_arms([0.5, 0.3, 0.2], {2}) == pytest.approx([0.6, 0.4, 0.0])
    assert without_arms([0.25, 0.25, 0.25, 0.25], {1, 3}) == pytest.approx([0.5, 0.0, 0.5, 0.0])
    assert one_hot(3, 1) == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="every arm"):
        without_arms([0.5, 0.5], {0, 1})


def _healthy_rollout(
    spec: ExperimentSpec, rng: np.random.Generator, *, looks_per_stage: int, batch: int
) -> bool:
    """Simulate one rollout whose candidate equals the control; True if it was rolled back."""
    rates = {"reward": 0.10, "errors": 0.05}
    exposures = np.zeros(2)
    sums = {m: np.zeros(2) for m in rates}
    seq_primary: list[SequentialState | None] = [None, None]
    seq_guard: list[SequentialState | None] = [None, None]
    alpha = 1.0 - spec.confidence_level
    assert spec.stages is not None
    for index, stage in enumerate(spec.stages):
        stage_start = exposures.sum()
        for _ in range(looks_per_stage):
            n_candidate = rng.binomial(batch, stage.share)
            n = np.array([batch - n_candidate, n_candidate])
            exposures += n
            for metric, p in rates.items():
                sums[metric] += rng.binomial(n, p)
            primary = analyze(
                metric_type="binary", direction="maximize", alpha=alpha, control=0,
                exposures=exposures, expected_exposures=exposures, count=exposures,
                sums=sums["reward"], sums_sq=sums["reward"], sequential_states=seq_primary,
                rng=rng, draws=200,
            )
            seq_primary = list(primary.sequential_states)
            checks = guardrail(
                metric_type="binary", direction="minimize", alpha=alpha, control=0,
                count=exposures, sums=sums["errors"], sums_sq=sums["errors"],
                sequential_states=seq_guard, max_relative_degradation=0.1,
            )
            seq_guard = [None] + [c.state for c in checks]
            rec = recommend(
                spec=spec, status="running", primary=primary, guardrails={"errors": checks},
                exposures=[int(x) for x in exposures], stage_index=index,
                stage_started_at=T0, started_at=T0, now=T0,
                stage_exposures=int(exposures.sum() - stage_start),
            )
            if rec.action == "rollback":
                return True
    return False


@pytest.mark.simulation
def test_false_rollback_rate_of_healthy_rollouts_is_at_most_alpha() -> None:
    """Over 300 simulated rollouts whose candidate equals the control, looked at 10 times per
    stage through every stage, the rate of (false) rollbacks is at most α + 2 standard errors."""
    spec = ExperimentSpec(
        key="healthy",
        policy="rollout",
        sticky=True,
        arms=[Arm(key="control", control=True, weight=0.99), Arm(key="candidate", weight=0.01)],
        metrics=[
            Metric(name="reward", type="binary", direction="maximize"),
            Metric(name="errors", type="binary", direction="minimize",
                   max_relative_degradation=0.1),
        ],
        stages=[Stage(share=s, min_duration_s=0, min_exposures=0)
                for s in (0.01, 0.05, 0.25, 0.5, 1.0)],
    )
    rng = np.random.default_rng(20260101)
    runs = 300
    rolled_back = sum(
        _healthy_rollout(spec, rng, looks_per_stage=10, batch=1000) for _ in range(runs)
    )
    alpha = 1.0 - spec.confidence_level
    rate = rolled_back / runs
    bound = alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)
    print(f"\nfalse rollbacks: {rolled_back} of {runs} healthy rollouts ({rate:.3f}; "
          f"bound {bound:.3f})")
    assert rate <= bound
