"""Degenerate and invalid input: defined results (None where undefined), clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from croupier.stats.posterior import best_arm
from croupier.stats.power import SampleSizeError, sample_size
from croupier.stats.report import StatsInputError, analyze, guardrail
from croupier.stats.sequential import SequentialState, mixture_p_values, update
from croupier.stats.significance import (
    holm,
    lift,
    t_interval,
    two_proportion_test,
    welch_test,
    wilson_interval,
)
from croupier.stats.srm import srm_test
from croupier.stats.sufficient import SufficientStats, means, sample_variances
from croupier.stats.thompson import (
    AllocationError,
    apply_floor,
    cap_change,
    thompson_allocation,
    top_two_probabilities,
)


def _analyze(metric_type: str = "binary", **overrides: object) -> object:
    args: dict[str, object] = {
        "metric_type": metric_type,
        "direction": "maximize",
        "alpha": 0.05,
        "control": 0,
        "exposures": [0, 0],
        "expected_exposures": [0.0, 0.0],
        "count": [0, 0],
        "sums": [0.0, 0.0],
        "sums_sq": [0.0, 0.0],
        "sequential_states": None,
        "rng": np.random.default_rng(0),
        "draws": 2_000,
    }
    args.update(overrides)
    return analyze(**args)  # type: ignore[arg-type]


def test_sufficient_stats_of_nothing_has_no_mean_or_variance() -> None:
    """Empty statistics have n = 0 and no mean, variance or std."""
    empty = SufficientStats()
    assert (empty.mean, empty.variance, empty.std) == (None, None, None)
    one = SufficientStats.of([3.0])
    assert one.mean == 3.0
    assert one.variance is None


def test_array_helpers_return_nan_without_warnings_for_empty_arms() -> None:
    """Vectorised means and variances give NaN, not a warning, where counts are too small."""
    assert np.isnan(means([0, 2], [0.0, 4.0])[0])
    var = sample_variances([0, 1, 3], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0])
    assert np.isnan(var[0])
    assert np.isnan(var[1])
    assert var[2] == 0.0


def test_interval_functions_return_none_without_data() -> None:
    """Wilson needs one exposure and the t interval two observations, else None."""
    assert wilson_interval(0, 0, alpha=0.05) is None
    assert wilson_interval(0, 5, alpha=0.05) is not None
    assert t_interval(1.0, 0.0, 1, alpha=0.05) is None
    assert t_interval(1.0, 0.0, 2, alpha=0.05) == (1.0, 1.0)


def test_two_proportion_test_without_exposures_is_none_and_all_zero_is_p_one() -> None:
    """No exposures gives None; identical all-0 or all-1 arms give diff 0 and p = 1."""
    assert two_proportion_test(0, 0, 0, 10, alpha=0.05) is None
    for x in (0, 10):
        res = two_proportion_test(x, 10, x, 10, alpha=0.05)
        assert res is not None
        assert (res.diff, res.p_value, res.diff_ci) == (0.0, 1.0, (0.0, 0.0))


def test_welch_with_zero_variance_has_defined_limits() -> None:
    """Welch with zero variance gives p = 1 for equal means, p = 0 otherwise, never NaN."""
    assert welch_test(1.0, 0.0, 1, 1.0, 1.0, 5, alpha=0.05) is None
    same = welch_test(2.0, 0.0, 5, 2.0, 0.0, 5, alpha=0.05)
    assert same is not None
    assert same.p_value == 1.0
    differ = welch_test(3.0, 0.0, 5, 2.0, 0.0, 5, alpha=0.05)
    assert differ is not None
    assert differ.p_value == 0.0
    assert differ.diff_ci == (1.0, 1.0)


def test_lift_is_none_when_control_mean_is_zero_or_missing() -> None:
    """Lift is undefined for a control mean of 0 (or a subnormal one) and for missing data."""
    assert lift(0.1, 0.0) is None
    assert lift(None, 0.2) is None
    assert lift(0.1, None) is None
    assert lift(1.0, 5e-324) is None
    assert lift(0.1, 0.2) == pytest.approx(0.5)


def test_holm_handles_empty_and_missing_p_values() -> None:
    """Holm of nothing is nothing; a missing p-value stays None and counts in the family."""
    assert holm([]) == []
    assert holm([None, 0.02]) == [None, 0.04]


def test_best_arm_without_data_is_uniform_for_binary_and_none_for_continuous() -> None:
    """With no data, binary arms tie (Beta(1, 1) each); continuous arms have no posterior."""
    res = best_arm("binary", "maximize", [0, 0], [0, 0], [0, 0], rng=np.random.default_rng(0))
    assert res.p_best is not None
    assert res.p_best == pytest.approx((0.5, 0.5), abs=0.03)
    cont = best_arm(
        "continuous", "minimize", [5, 1], [5.0, 1.0], [6.0, 1.0], rng=np.random.default_rng(0)
    )
    assert cont.p_best is None
    assert cont.expected_loss is None
    assert isinstance(cont.seed, int)


def test_best_arm_with_point_mass_posteriors_splits_ties() -> None:
    """Zero-variance continuous arms with equal means share P(best) equally, with zero loss."""
    res = best_arm(
        "continuous", "maximize", [4, 4], [8.0, 8.0], [16.0, 16.0], rng=np.random.default_rng(0)
    )
    assert res.p_best == (0.5, 0.5)
    assert res.expected_loss == (0.0, 0.0)


def test_best_arm_seed_reproduces_result() -> None:
    """The returned seed is enough to reproduce the Monte Carlo result exactly."""
    args = ("binary", "maximize", [100, 90], [10, 12], [10, 12])
    first = best_arm(*args, rng=np.random.default_rng(7))  # type: ignore[arg-type]
    again = best_arm(*args, rng=np.random.default_rng(7))  # type: ignore[arg-type]
    assert first == again
    other = best_arm(*args, rng=np.random.default_rng(8))  # type: ignore[arg-type]
    assert other.seed != first.seed


def test_sequential_update_starts_at_one_and_ignores_undefined_looks() -> None:
    """A fresh test reports 1.0; undefined or too-small looks leave the p-value unchanged."""
    state, p = update(None, estimate=None, variance=None, n_arm=0, n_control=0)
    assert (state, p) == (SequentialState(1.0), 1.0)
    state, p = update(SequentialState(0.3), estimate=1.0, variance=0.0, n_arm=50, n_control=50)
    assert p == 0.3
    state, p = update(None, estimate=5.0, variance=0.01, n_arm=10, n_control=10)
    assert p == 1.0
    state, p = update(
        SequentialState(float("nan")), estimate=0.0, variance=1.0, n_arm=99, n_control=99
    )
    assert p == 1.0


def test_sequential_vector_form_handles_zero_and_infinite_inputs_quietly() -> None:
    """The vectorised p-value returns 1.0 for zero/non-finite variances and 0 for huge z."""
    p = mixture_p_values(
        [0.0, 1.0, 1.0, 1e300], [0.0, np.inf, np.nan, 1e-300], [100] * 4, [100] * 4
    )
    assert p.tolist()[:3] == [1.0, 1.0, 1.0]
    assert p[3] == 0.0


def test_srm_without_exposures_is_none_and_impossible_arm_is_flagged() -> None:
    """No exposures gives (None, False); exposures on a zero-weight arm are an SRM."""
    assert srm_test([0, 0], [0.0, 0.0]).p_value is None
    assert srm_test([10], [10.0]).p_value is None
    res = srm_test([10, 3], [13.0, 0.0])
    assert (res.p_value, res.flag) == (0.0, True)
    kept = srm_test([10, 10, 0], [10.0, 10.0, 0.0])
    assert kept.p_value == pytest.approx(1.0)


def test_thompson_allocation_without_posterior_is_equal_split() -> None:
    """When the posterior is undefined, the target is the equal split (plus floor)."""
    alloc = thompson_allocation(
        metric_type="continuous",
        direction="maximize",
        count=[0, 0, 0],
        sums=[0, 0, 0],
        sums_sq=[0, 0, 0],
        min_arm_weight=0.05,
        rng=np.random.default_rng(0),
    )
    assert alloc.raw is None
    assert alloc.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_floor_of_all_zero_raw_weights_is_equal_split() -> None:
    """All-zero raw weights become the equal split instead of dividing by zero."""
    assert apply_floor([0.0, 0.0], 0.1).tolist() == [0.5, 0.5]


def test_additive_floor_preserves_order_and_is_not_clip_and_renormalise() -> None:
    """The floor is p = f + (1 - k f) w exactly, keeping the order of the raw weights."""
    w = np.array([0.9, 0.1, 0.0])
    floored = apply_floor(w, 0.05)
    np.testing.assert_allclose(floored, 0.05 + 0.85 * w)
    assert floored[0] > floored[1] > floored[2]


def test_top_two_gives_the_challenger_traffic_even_when_leader_is_certain() -> None:
    """Top-two Thompson sampling sends (1 - beta) to challengers even if P(best) is 1."""
    samples = np.tile([[1.0, 0.5, 0.2]], (100, 1))
    probs = top_two_probabilities(samples, direction="maximize", beta=0.5)
    np.testing.assert_allclose(probs, [0.5, 0.5, 0.0])
    probs_min = top_two_probabilities(samples, direction="minimize", beta=0.5)
    np.testing.assert_allclose(probs_min, [0.0, 0.5, 0.5])


def test_analyze_with_no_data_at_all_is_defined() -> None:
    """An experiment with no exposures yields Nones, sequential p = 1, no SRM flag."""
    for metric_type in ("binary", "continuous"):
        report = _analyze(metric_type)
        comp = report.comparisons[0]  # type: ignore[attr-defined]
        assert comp.diff is None
        assert comp.p_value is None
        assert comp.p_value_adjusted is None
        assert comp.sequential_p_value == 1.0
        assert comp.significant is False
        assert report.srm.p_value is None  # type: ignore[attr-defined]
        arm = report.arms[0]  # type: ignore[attr-defined]
        assert (arm.mean, arm.std, arm.ci) == (None, None, None)


def test_analyze_with_one_empty_arm_still_reports_the_other() -> None:
    """One arm with data and one without: the data arm has stats, the comparison is None."""
    report = _analyze(
        "continuous",
        exposures=[10, 0],
        expected_exposures=[5.0, 5.0],
        count=[10, 0],
        sums=[10.0, 0.0],
        sums_sq=[14.0, 0.0],
    )
    arm0, arm1 = report.arms  # type: ignore[attr-defined]
    assert arm0.mean == 1.0
    assert arm0.ci is not None
    assert arm1.mean is None
    assert arm0.p_best is None
    assert report.comparisons[0].diff is None  # type: ignore[attr-defined]
    assert report.srm.p_value is not None  # type: ignore[attr-defined]
    assert report.srm.p_value < 0.01  # type: ignore[attr-defined]


def test_analyze_with_all_zero_and_all_one_rewards() -> None:
    """All-0 and all-1 binary arms give finite stats and a zero-width Wald interval."""
    report = _analyze(
        exposures=[50, 50], expected_exposures=[50.0, 50.0], sums=[0.0, 50.0], sums_sq=[0, 50]
    )
    comp = report.comparisons[0]  # type: ignore[attr-defined]
    assert comp.diff == 1.0
    assert comp.lift is None
    assert comp.p_value is not None
    assert comp.p_value < 1e-10
    assert report.arms[1].std == 0.0  # type: ignore[attr-defined]


def test_analyze_carries_sequential_state_and_never_raises_p() -> None:
    """Feeding the returned states back in never increases the sequential p-value."""
    states = None
    last = 1.0
    for n, x_c, x_a in [(1000, 100, 150), (2000, 200, 200), (3000, 300, 290)]:
        report = _analyze(
            exposures=[n, n],
            expected_exposures=[n, n],
            sums=[x_c, x_a],
            sums_sq=[x_c, x_a],
            sequential_states=states,
        )
        states = report.sequential_states  # type: ignore[attr-defined]
        p = report.comparisons[0].sequential_p_value  # type: ignore[attr-defined]
        assert p <= last
        last = p
    assert last < 0.05


def test_guardrail_without_data_is_not_breached() -> None:
    """A guardrail with no data reports None p-values, sequential p = 1 and no breach."""
    checks = guardrail(
        metric_type="binary",
        direction="minimize",
        alpha=0.05,
        control=0,
        count=[0, 0],
        sums=[0, 0],
        sums_sq=[0, 0],
        sequential_states=None,
        max_relative_degradation=0.1,
    )
    assert len(checks) == 1
    assert checks[0].p_value is None
    assert checks[0].sequential_p_value == 1.0
    assert checks[0].breached is False


@pytest.mark.parametrize(
    ("direction", "arm_mean", "tolerance", "breached"),
    [
        ("maximize", 0.8, {"max_degradation": 0.1}, True),
        ("maximize", 0.8, {"max_degradation": 0.3}, False),
        ("maximize", 1.2, {}, False),
        ("minimize", 1.2, {"max_degradation": 0.1}, True),
        ("minimize", 1.2, {"max_relative_degradation": 0.1}, True),
        ("minimize", 1.2, {"max_relative_degradation": 0.3}, False),
        ("minimize", 0.8, {}, False),
        ("maximize", 0.8, {"max_relative_degradation": 0.1}, True),
    ],
)
def test_guardrail_breaches_only_beyond_tolerance_in_the_bad_direction(
    direction: str, arm_mean: float, tolerance: dict[str, float], breached: bool
) -> None:
    """A clear 20 % degradation breaches a 10 % tolerance, not a 30 % one, in both directions."""
    n, sd = 5000, 0.5
    sums = [n * 1.0, n * arm_mean]
    sums_sq = [n * 1.0 + (n - 1) * sd**2, n * arm_mean**2 + (n - 1) * sd**2]
    checks = guardrail(
        metric_type="continuous",
        direction=direction,  # type: ignore[arg-type]
        alpha=0.05,
        control=0,
        count=[n, n],
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        **tolerance,  # type: ignore[arg-type]
    )
    assert checks[0].breached is breached
    assert checks[0].diff == pytest.approx(arm_mean - 1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exposures": [1, 2], "count": [1]}, "count has 1 entries"),
        ({"control": 2}, "out of range"),
        ({"alpha": 1.5}, "alpha"),
        ({"exposures": [-1, 2], "expected_exposures": [1, 1]}, "non-negative"),
        ({"exposures": [5, 5], "sums": [6.0, 0.0]}, "between 0 and the exposures"),
        ({"sums": [float("nan"), 0.0]}, "finite"),
        ({"sequential_states": [None]}, "sequential_states"),
        ({"exposures": [], "expected_exposures": []}, "at least one arm"),
    ],
)
def test_analyze_rejects_inconsistent_totals(overrides: dict[str, object], message: str) -> None:
    """Structurally invalid totals raise StatsInputError naming the problem."""
    with pytest.raises(StatsInputError, match=message):
        _analyze(**overrides)


def test_guardrail_rejects_two_tolerances_and_negative_tolerance() -> None:
    """A guardrail takes one non-negative tolerance."""
    base = {
        "metric_type": "binary",
        "direction": "maximize",
        "alpha": 0.05,
        "control": 0,
        "count": [1, 1],
        "sums": [0, 0],
        "sums_sq": [0, 0],
        "sequential_states": None,
    }
    with pytest.raises(StatsInputError, match="not both"):
        guardrail(**base, max_degradation=0.1, max_relative_degradation=0.1)  # type: ignore[arg-type]
    with pytest.raises(StatsInputError, match="non-negative"):
        guardrail(**base, max_degradation=-0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "binary", "baseline": 0.1}, "exactly one of mde"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.1, "mde_relative": 0.1}, "exactly one"),
        ({"type": "binary", "baseline": 1.2, "mde": 0.1}, "between 0 and 1"),
        ({"type": "binary", "baseline": 0.95, "mde": 0.1}, "below 1"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.0}, "non-zero"),
        ({"type": "continuous", "baseline": 1.0, "mde": 0.1}, "std"),
        ({"type": "continuous", "baseline": 1.0, "mde": 0.1, "std": -1.0}, "std"),
        ({"type": "continuous", "baseline": 0.0, "mde_relative": 0.1, "std": 1.0}, "non-zero"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "alpha": 0.0}, "alpha"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "power": 1.0}, "power"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "arms": 1}, "arms"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "arms": 2.5}, "arms"),
        ({"type": "binary", "baseline": float("nan"), "mde": 0.01}, "finite"),
        ({"type": "ratio", "baseline": 0.1, "mde": 0.01}, "type"),
        ({"type": "continuous", "baseline": 1.0, "mde": 1e-300, "std": 1.0}, "too small"),
    ],
)
def test_sample_size_rejects_invalid_requests_with_a_sentence(
    kwargs: dict[str, object], message: str
) -> None:
    """Invalid sample-size requests raise SampleSizeError (a ValueError) with a clear message."""
    with pytest.raises(SampleSizeError, match=message) as info:
        sample_size(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert str(info.value).endswith(".")


def test_sample_size_total_scales_with_arms() -> None:
    """total is per_arm times the number of arms and per_arm is at least 1."""
    res = sample_size(type="continuous", baseline=1.0, mde=100.0, std=1.0, arms=5)
    assert res.per_arm >= 1
    assert res.total == res.per_arm * 5
    assert math.isfinite(res.total)


def test_allocation_settings_are_validated() -> None:
    """An impossible floor, a negative cap or mismatched shapes raise AllocationError."""
    with pytest.raises(AllocationError, match="min_arm_weight"):
        apply_floor([0.5, 0.5], 0.6)
    with pytest.raises(AllocationError, match="max_change"):
        cap_change([0.5, 0.5], [0.5, 0.5], -0.1)
    with pytest.raises(AllocationError, match="one entry per arm"):
        cap_change([0.5, 0.5], [1.0], 0.1)
    with pytest.raises(AllocationError, match="beta"):
        top_two_probabilities(np.zeros((2, 2)), direction="maximize", beta=2.0)
