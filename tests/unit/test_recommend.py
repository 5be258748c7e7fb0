"""recommend(): every rule of SPEC §4 on hand-built statistics (no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from croupier.model import Arm, ExperimentSpec, Metric, Stage
from croupier.optimizer.recommend import Recommendation, recommend
from croupier.stats.report import ArmSummary, Comparison, GuardrailCheck, MetricReport
from croupier.stats.sequential import SequentialState
from croupier.stats.srm import SrmResult

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _spec(
    policy: str = "fixed", arms: int = 2, direction: str = "maximize", **more: Any
) -> ExperimentSpec:
    if policy == "rollout" and "stages" not in more:
        more["stages"] = [
            Stage(share=s, min_duration_s=60, min_exposures=100)
            for s in (0.01, 0.05, 0.25, 0.5, 1.0)
        ]
    return ExperimentSpec(
        key="exp",
        policy=policy,  # type: ignore[arg-type]
        sticky=policy != "thompson",
        arms=[Arm(key=f"a{i}", control=i == 0) for i in range(arms)],
        metrics=[Metric(name="reward", direction=direction)],  # type: ignore[arg-type]
        **more,
    )


def _report(
    means: list[float | None],
    *,
    p_best: list[float] | None = None,
    loss: list[float] | None = None,
    seq: list[float] | None = None,
    fixed: list[float] | None = None,
    srm_p: float | None = 0.5,
    alpha: float = 0.05,
) -> MetricReport:
    k = len(means)
    seq = seq or [1.0] * (k - 1)
    arms = tuple(
        ArmSummary(
            arm=i,
            exposures=1000,
            expected_exposures=1000.0,
            count=1000,
            sum=(m or 0.0) * 1000,
            mean=m,
            std=0.5,
            ci=None,
            p_best=None if p_best is None else p_best[i],
            expected_loss=None if loss is None else loss[i],
        )
        for i, m in enumerate(means)
    )
    comps = tuple(
        Comparison(
            arm=i,
            control=0,
            diff=None if means[i] is None or means[0] is None else means[i] - means[0],  # type: ignore[operator]
            diff_ci=None,
            lift=None,
            p_value=fixed[i - 1] if fixed else None,
            p_value_adjusted=None,
            sequential_p_value=seq[i - 1],
            significant=seq[i - 1] < alpha,
            state=SequentialState(seq[i - 1]),
        )
        for i in range(1, k)
    )
    return MetricReport(
        alpha=alpha,
        arms=arms,
        comparisons=comps,
        srm=SrmResult(p_value=srm_p, flag=srm_p is not None and srm_p < 0.001),
        sequential_states=(None, *(c.state for c in comps)),
        seed=1,
        draws=10_000,
    )


def _check(arm: int, p: float, alpha: float = 0.05) -> GuardrailCheck:
    return GuardrailCheck(
        arm=arm,
        control=0,
        diff=1.0,
        p_value=0.01,
        sequential_p_value=p,
        breached=p < alpha,
        state=SequentialState(p),
    )


def _rec(
    spec: ExperimentSpec,
    primary: MetricReport,
    *,
    status: str = "running",
    guardrails: dict[str, tuple[GuardrailCheck, ...]] | None = None,
    exposures: list[int] | None = None,
    stage_index: int | None = None,
    stage_started_at: datetime | None = None,
    started_at: datetime | None = None,
    **more: Any,
) -> Recommendation:
    return recommend(
        spec=spec,
        status=status,
        primary=primary,
        guardrails=guardrails or {},
        exposures=exposures if exposures is not None else [1000] * len(spec.arms),
        stage_index=stage_index,
        stage_started_at=stage_started_at,
        started_at=started_at if started_at is not None else NOW - timedelta(hours=1),
        now=NOW,
        **more,
    )


# ---------------------------------------------------------------- lifecycle


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("draft", "not been started"),
        ("paused", "is paused"),
        ("completed", "completed"),
        ("rolled_back", "rolled back"),
        ("archived", "archived"),
    ],
)
def test_only_running_experiments_get_actions(status: str, words: str) -> None:
    """A non-running experiment always gets continue, with a reason naming its status."""
    primary = _report([0.1, 0.5], seq=[1e-9])
    guard = {"latency": (_check(1, 1e-9),)}
    rec = _rec(_spec(), primary, status=status, guardrails=guard)
    assert (rec.action, rec.arm, rec.next_stage, rec.rollback_arms) == ("continue", None, None, ())
    assert words in rec.reason and rec.reason.endswith(".")


# ---------------------------------------------------------------- guardrails


def test_guardrail_breach_rolls_back_the_arms_in_fixed_and_thompson() -> None:
    """Breached arms are named for weight 0; the reason names the metric and p-value."""
    for policy in ("fixed", "thompson"):
        guard = {
            "latency": (_check(1, 0.2), _check(2, 0.001)),
            "errors": (_check(1, 0.01), _check(2, 0.3)),
        }
        rec = _rec(_spec(policy, arms=3), _report([0.1, 0.2, 0.3]), guardrails=guard)
        assert rec.action == "rollback" and rec.arm == "a1"
        assert rec.rollback_arms == ("a1", "a2")
        assert "latency" in rec.reason and "errors" in rec.reason and "0.001" in rec.reason


def test_guardrail_breach_of_disabled_arm_is_not_repeated() -> None:
    """An arm already rolled back is not rolled back again and never wins."""
    spec = _spec("thompson", arms=3)
    primary = _report([0.1, 0.9, 0.2], p_best=[0.0, 0.99, 0.01], loss=[0.8, 0.0, 0.7])
    rec = _rec(
        spec, primary, guardrails={"latency": (_check(1, 0.001), _check(2, 0.9))}, disabled_arms={1}
    )
    assert rec.action == "continue"
    assert "a1" in rec.reason and "guardrail" in rec.reason


def test_every_other_arm_rolled_back_stops_with_the_control() -> None:
    """When all non-control arms are disabled the experiment stops serving the control."""
    rec = _rec(_spec("fixed", arms=3), _report([0.1, 0.2, 0.3]), disabled_arms={1, 2})
    assert (rec.action, rec.arm) == ("stop", "a0")


def test_guardrail_not_breached_does_nothing() -> None:
    """A guardrail p-value at or above alpha is not a breach."""
    rec = _rec(
        _spec(), _report([0.1, 0.1]), guardrails={"latency": (_check(1, 0.05),)}, exposures=[10, 10]
    )
    assert rec.action == "continue"


def test_rollout_guardrail_breach_rolls_back_the_experiment() -> None:
    """In a rollout a breach rolls the whole experiment back to the control."""
    rec = _rec(
        _spec("rollout"),
        _report([0.1, 0.1]),
        guardrails={"latency": (_check(1, 0.0001),)},
        stage_index=0,
        stage_started_at=NOW,
    )
    assert (rec.action, rec.arm, rec.rollback_arms) == ("rollback", "a1", ("a1",))
    assert "Roll back to the control" in rec.reason


# ---------------------------------------------------------------- rollout


@pytest.mark.parametrize(
    ("direction", "means"), [("maximize", [0.2, 0.1]), ("minimize", [0.1, 0.2])]
)
@pytest.mark.parametrize("stage_index", [1, 4])
def test_rollout_primary_degradation_holds_the_stage(
    direction: str, means: list[float], stage_index: int
) -> None:
    """A primary metric significantly worse now (in its direction) holds a rollout at its
    stage, the last one included; it never rolls back (SPEC §4: only guardrails do)."""
    rec = _rec(
        _spec("rollout", direction=direction),
        _report(means, seq=[0.0005], fixed=[0.0001]),  # type: ignore[arg-type]
        stage_index=stage_index,
        stage_started_at=NOW - timedelta(hours=1),
        stage_exposures=10_000,
    )
    assert (rec.action, rec.arm, rec.next_stage, rec.rollback_arms) == (
        "continue", None, None, ()
    )
    assert rec.reason.startswith(f"Hold stage {stage_index + 1} ")
    assert "significantly worse" in rec.reason and "p = 0.0001" in rec.reason


def test_rollout_hold_reads_the_current_look_not_the_running_minimum() -> None:
    """A sequential running minimum that dipped below α once (a transient: rewards of the
    newest exposures not in yet) does not hold the stage when this look is not significant;
    a significant look in the better direction does not hold either."""
    for means, fixed in (([0.2, 0.1], 0.2), ([0.1, 0.2], 0.0001)):
        rec = _rec(
            _spec("rollout"),
            _report(means, seq=[0.0001], fixed=[fixed]),  # type: ignore[arg-type]
            stage_index=1,
            stage_started_at=NOW - timedelta(hours=1),
            stage_exposures=10_000,
        )
        assert (rec.action, rec.next_stage) == ("continue", 2), rec.reason


def test_rollout_primary_degradation_does_not_stop_the_limits() -> None:
    """A held rollout still stops at max_exposures."""
    rec = _rec(
        _spec("rollout", max_exposures=1_500),
        _report([0.2, 0.1], seq=[0.001], fixed=[0.0001]),  # type: ignore[arg-type]
        stage_index=1,
        stage_started_at=NOW - timedelta(hours=1),
        stage_exposures=10_000,
    )
    assert rec.action == "stop"


def test_rollout_significant_improvement_advances() -> None:
    """A significantly better candidate is no reason to roll back: the stage advances."""
    rec = _rec(
        _spec("rollout"),
        _report([0.1, 0.2], seq=[0.001]),
        stage_index=1,
        stage_started_at=NOW - timedelta(hours=1),
        stage_exposures=10_000,
    )
    assert (rec.action, rec.next_stage) == ("continue", 2)
    assert rec.reason.startswith("Advance to stage 3 (25%)")


def test_rollout_waits_for_duration_and_exposures() -> None:
    """A stage short of its min_duration_s or min_exposures holds, saying what is missing."""
    spec = _spec("rollout")
    rec = _rec(
        spec,
        _report([0.1, 0.1]),
        stage_index=0,
        stage_started_at=NOW - timedelta(seconds=30),
        stage_exposures=40,
    )
    assert (rec.action, rec.next_stage) == ("continue", None)
    assert "30 s more" in rec.reason and "60 more exposures" in rec.reason
    rec = _rec(
        spec,
        _report([0.1, 0.1]),
        stage_index=0,
        stage_started_at=NOW - timedelta(minutes=5),
        stage_exposures=99,
    )
    assert rec.next_stage is None and "1 more exposures" in rec.reason
    rec = _rec(
        spec,
        _report([0.1, 0.1]),
        stage_index=0,
        stage_started_at=NOW - timedelta(minutes=5),
        stage_exposures=100,
    )
    assert rec.next_stage == 1 and rec.reason.startswith("Advance to stage 2 (5%)")


def test_rollout_stage_exposures_default_to_all_exposures() -> None:
    """Without a stage count the experiment's total exposures are used."""
    rec = _rec(
        _spec("rollout"),
        _report([0.1, 0.1]),
        stage_index=0,
        stage_started_at=NOW - timedelta(minutes=5),
        exposures=[60, 40],
    )
    assert rec.next_stage == 1


def test_rollout_last_stage_completes_with_the_candidate() -> None:
    """The last stage (share 1.0) held with no degradation stops with the candidate as winner."""
    rec = _rec(
        _spec("rollout"),
        _report([0.1, 0.1]),
        stage_index=4,
        stage_started_at=NOW - timedelta(hours=2),
        stage_exposures=500,
    )
    assert (rec.action, rec.arm, rec.next_stage) == ("stop", "a1", None)
    assert "rolled out to everyone" in rec.reason


def test_rollout_default_stages_and_missing_stage_start() -> None:
    """Default stages apply when none are stored; a missing stage start counts as no time."""
    spec = _spec("rollout", stages=None)
    rec = _rec(
        spec, _report([0.1, 0.1]), stage_index=None, stage_started_at=None, stage_exposures=1000
    )
    assert rec.action == "continue" and "stage 1 (1%)" in rec.reason and "more" in rec.reason


# ---------------------------------------------------------------- thompson


def test_thompson_stops_on_p_best_and_loss() -> None:
    """Thompson stops when the leader's P(best) and expected loss pass their thresholds."""
    spec = _spec("thompson", arms=3, loss_threshold=0.001)
    primary = _report([0.1, 0.2, 0.15], p_best=[0.0, 0.96, 0.04], loss=[0.1, 0.0005, 0.05])
    rec = _rec(spec, primary)
    assert (rec.action, rec.arm) == ("stop", "a1")
    assert "96.0%" in rec.reason


def test_thompson_waits_below_p_best_threshold() -> None:
    """A leader below p_best_threshold keeps the experiment running."""
    primary = _report([0.1, 0.2], p_best=[0.2, 0.8], loss=[0.1, 0.0])
    rec = _rec(_spec("thompson"), primary)
    assert rec.action == "continue" and "leader: a1 at 80.0%" in rec.reason


def test_thompson_default_loss_threshold_is_one_percent_of_the_mean() -> None:
    """With no loss_threshold the leader's expected loss must be ≤ 1 % of its |mean|."""
    spec = _spec("thompson")
    ok = _report([0.1, 0.2], p_best=[0.01, 0.99], loss=[0.1, 0.0019])
    assert _rec(spec, ok).action == "stop"
    too_lossy = _report([0.1, 0.2], p_best=[0.01, 0.99], loss=[0.1, 0.0021])
    rec = _rec(spec, too_lossy)
    assert rec.action == "continue" and "expected loss" in rec.reason


def test_thompson_waits_for_min_exposures_and_defined_p_best() -> None:
    """Every active arm needs min_exposures_per_arm, and P(best) must be defined."""
    spec = _spec("thompson", arms=3)
    primary = _report([0.1, 0.9, 0.2], p_best=[0.0, 1.0, 0.0], loss=[0.8, 0.0, 0.7])
    rec = _rec(spec, primary, exposures=[500, 500, 40])
    assert rec.action == "continue" and "a2 has 40 of the 100" in rec.reason
    rec = _rec(spec, primary, exposures=[500, 500, 40], disabled_arms={2})
    assert (rec.action, rec.arm) == ("stop", "a1")
    rec = _rec(spec, _report([0.1, 0.9, None]))
    assert rec.action == "continue" and "P(best) is not defined" in rec.reason


@pytest.mark.parametrize(("direction", "winner"), [("maximize", "a2"), ("minimize", "a1")])
def test_thompson_respects_direction_via_p_best(direction: str, winner: str) -> None:
    """The winner is whichever arm the direction-aware P(best) favours."""
    p_best = [0.0, 0.02, 0.98] if direction == "maximize" else [0.0, 0.98, 0.02]
    primary = _report([0.5, 0.2, 0.8], p_best=p_best, loss=[0.3, 0.0, 0.0])
    rec = _rec(_spec("thompson", arms=3, direction=direction, loss_threshold=0.01), primary)  # type: ignore[arg-type]
    assert (rec.action, rec.arm) == ("stop", winner)


# ---------------------------------------------------------------- fixed


def test_fixed_stops_on_significant_improvement() -> None:
    """A significantly better arm wins; the best of several by mean."""
    primary = _report([0.10, 0.15, 0.20, 0.12], seq=[0.01, 0.02, 0.5])
    rec = _rec(_spec("fixed", arms=4), primary)
    assert (rec.action, rec.arm) == ("stop", "a2")
    assert "significantly better" in rec.reason


def test_fixed_minimize_winner_is_the_smallest_mean() -> None:
    """When minimizing, a significantly lower mean is better."""
    primary = _report([0.5, 0.3, 0.7], seq=[0.01, 0.01])
    rec = _rec(_spec("fixed", arms=3, direction="minimize"), primary)
    assert (rec.action, rec.arm) == ("stop", "a1")


def test_fixed_significantly_worse_keeps_the_control() -> None:
    """When every significant arm is worse the experiment stops with the control."""
    primary = _report([0.5, 0.3, 0.5], seq=[0.001, 0.9])
    rec = _rec(_spec("fixed", arms=3), primary)
    assert (rec.action, rec.arm) == ("stop", "a0")
    assert "a1 is significantly worse" in rec.reason


def test_fixed_breached_arm_never_wins() -> None:
    """A significantly better arm that breached a guardrail (already disabled) cannot win."""
    primary = _report([0.1, 0.5, 0.2], seq=[0.001, 0.01])
    rec = _rec(
        _spec("fixed", arms=3),
        primary,
        guardrails={"lat": (_check(1, 0.001), _check(2, 0.9))},
        disabled_arms={1},
    )
    assert (rec.action, rec.arm) == ("stop", "a2")


def test_fixed_waits_for_min_exposures_and_significance() -> None:
    """Nothing stops before min_exposures_per_arm, nor without a significant comparison."""
    spec = _spec("fixed")
    rec = _rec(spec, _report([0.1, 0.5], seq=[1e-6]), exposures=[99, 500])
    assert rec.action == "continue" and "a0 has 99 of the 100" in rec.reason
    rec = _rec(spec, _report([0.1, 0.11], seq=[0.2]))
    assert rec.action == "continue" and "smallest sequential p = 0.2" in rec.reason


def test_srm_holds_statistical_stops() -> None:
    """A sample ratio mismatch blocks stopping on the statistics."""
    rec = _rec(_spec("fixed"), _report([0.1, 0.5], seq=[1e-6], srm_p=1e-5))
    assert rec.action == "continue" and "sample ratio mismatch" in rec.reason


# ---------------------------------------------------------------- limits


def test_max_exposures_stops_with_the_current_best() -> None:
    """At max_exposures the arm with the highest P(best) wins."""
    spec = _spec("thompson", arms=3, max_exposures=3000)
    primary = _report([0.1, 0.2, 0.15], p_best=[0.1, 0.6, 0.3], loss=[0.1, 0.01, 0.05])
    rec = _rec(spec, primary)
    assert (rec.action, rec.arm) == ("stop", "a1")
    assert "max_exposures (3000 ≥ 3000)" in rec.reason


def test_max_duration_stops_with_the_control_when_p_best_is_undefined() -> None:
    """At max_duration_s with no P(best) the control is kept."""
    spec = _spec("fixed", max_duration_s=3600)
    rec = _rec(spec, _report([0.1, 0.11]), started_at=NOW - timedelta(hours=2))
    assert (rec.action, rec.arm) == ("stop", "a0")
    assert "max_duration_s" in rec.reason and "undefined" in rec.reason
    rec = _rec(spec, _report([0.1, 0.11]), started_at=NOW - timedelta(minutes=30))
    assert rec.action == "continue"


def test_limits_apply_to_rollouts_too() -> None:
    """A rollout past max_exposures stops."""
    spec = _spec("rollout", max_exposures=100)
    primary = _report([0.1, 0.2], p_best=[0.1, 0.9], loss=[0.1, 0.0])
    rec = _rec(spec, primary, stage_index=0, stage_started_at=NOW, exposures=[90, 10])
    assert (rec.action, rec.arm) == ("stop", "a1")
