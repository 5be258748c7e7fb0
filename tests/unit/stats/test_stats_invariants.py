"""Hypothesis invariants of the statistics core."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from croupier.stats.posterior import best_arm
from croupier.stats.report import analyze, guardrail
from croupier.stats.sequential import SequentialState, update
from croupier.stats.significance import (
    holm,
    t_interval,
    two_proportion_test,
    welch_test,
    wilson_interval,
)
from croupier.stats.srm import srm_test
from croupier.stats.sufficient import SufficientStats
from croupier.stats.thompson import apply_floor, cap_change, thompson_allocation

alphas = st.floats(min_value=0.001, max_value=0.5)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
small_values = st.lists(st.floats(min_value=-100, max_value=100), min_size=0, max_size=30)


@st.composite
def binary_arm(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=0, max_value=5000))
    return n, draw(st.integers(min_value=0, max_value=n))


@given(binary_arm(), alphas)
def test_wilson_interval_is_inside_unit_interval_and_contains_estimate(
    arm: tuple[int, int], alpha: float
) -> None:
    """The Wilson interval lies in [0, 1] and contains the observed proportion."""
    n, x = arm
    ci = wilson_interval(x, n, alpha=alpha)
    if n == 0:
        assert ci is None
        return
    assert ci is not None
    assert 0.0 <= ci[0] <= x / n + 1e-12
    assert x / n - 1e-12 <= ci[1] <= 1.0


@given(finite, st.floats(min_value=0, max_value=1e4), st.integers(0, 10_000), alphas)
def test_t_interval_contains_mean(mean: float, std: float, n: int, alpha: float) -> None:
    """The t interval, when defined, is finite and contains the mean."""
    ci = t_interval(mean, std, n, alpha=alpha)
    if n < 2:
        assert ci is None
        return
    assert ci is not None
    assert all(math.isfinite(v) for v in ci)
    assert ci[0] <= mean <= ci[1]


@given(binary_arm(), binary_arm(), alphas)
def test_two_proportion_p_value_in_unit_interval_and_ci_contains_diff(
    arm: tuple[int, int], control: tuple[int, int], alpha: float
) -> None:
    """The z-test p-value is in [0, 1] and the Wald interval contains the difference."""
    res = two_proportion_test(arm[1], arm[0], control[1], control[0], alpha=alpha)
    if arm[0] == 0 or control[0] == 0:
        assert res is None
        return
    assert res is not None
    assert res.p_value is not None
    assert 0.0 <= res.p_value <= 1.0
    assert res.diff_ci is not None
    assert res.diff_ci[0] - 1e-12 <= res.diff <= res.diff_ci[1] + 1e-12


@given(small_values, small_values, alphas)
def test_welch_p_value_in_unit_interval_and_ci_contains_diff(
    a: list[float], c: list[float], alpha: float
) -> None:
    """Welch's p-value is in [0, 1] and its interval contains the difference of means."""
    sa, sc = SufficientStats.of(a), SufficientStats.of(c)
    if sa.mean is None or sc.mean is None or sa.std is None or sc.std is None:
        return
    res = welch_test(sa.mean, sa.std, sa.n, sc.mean, sc.std, sc.n, alpha=alpha)
    assert res is not None
    assert res.p_value is not None
    assert 0.0 <= res.p_value <= 1.0
    assert res.diff_ci is not None
    assert res.diff_ci[0] - 1e-9 <= res.diff <= res.diff_ci[1] + 1e-9


@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=32))
def test_holm_is_at_least_raw_and_monotone_in_raw_order(p: list[float | None]) -> None:
    """Holm-adjusted p-values are in [0, 1], at least the raw ones and ordered like them."""
    adjusted = holm(p)
    pairs = [(raw, adj) for raw, adj in zip(p, adjusted, strict=True) if raw is not None]
    assert all(adj is None for raw, adj in zip(p, adjusted, strict=True) if raw is None)
    for raw, adj in pairs:
        assert adj is not None
        assert raw <= adj <= 1.0
    ordered = sorted(pairs, key=lambda t: t[0])
    for (r1, a1), (r2, a2) in itertools.pairwise(ordered):
        assert a1 is not None
        assert a2 is not None
        if r1 < r2:
            assert a1 <= a2


@given(st.lists(st.floats(0, 1e-300) | st.floats(0, 1), min_size=1, max_size=32))
def test_sufficient_stats_merge_is_addition(values: list[float]) -> None:
    """Merging the statistics of two halves equals the statistics of the whole."""
    half = len(values) // 2
    merged = SufficientStats.of(values[:half]) + SufficientStats.of(values[half:])
    whole = SufficientStats.of(values)
    assert merged.n == whole.n
    assert math.isclose(merged.sum, whole.sum, abs_tol=1e-9)
    assert math.isclose(merged.sum_sq, whole.sum_sq, abs_tol=1e-9)
    assert whole.variance is None or whole.variance >= 0.0


@st.composite
def arm_totals(draw: st.DrawFn) -> tuple[str, list[int], list[float], list[float]]:
    k = draw(st.integers(min_value=1, max_value=6))
    metric_type = draw(st.sampled_from(["binary", "continuous"]))
    counts, sums, sums_sq = [], [], []
    for _ in range(k):
        if metric_type == "binary":
            n, x = draw(binary_arm())
            counts.append(n)
            sums.append(float(x))
            sums_sq.append(float(x))
        else:
            values = draw(small_values)
            s = SufficientStats.of(values)
            counts.append(s.n)
            sums.append(s.sum)
            sums_sq.append(s.sum_sq)
    return metric_type, counts, sums, sums_sq


@settings(max_examples=60, deadline=None)
@given(arm_totals(), st.sampled_from(["maximize", "minimize"]), st.integers(0, 2**32))
def test_p_best_sums_to_one_and_loss_is_non_negative(
    totals: tuple[str, list[int], list[float], list[float]], direction: str, seed: int
) -> None:
    """P(best) is in [0, 1] and sums to 1; expected losses are non-negative and finite."""
    metric_type, counts, sums, sums_sq = totals
    res = best_arm(
        metric_type,  # type: ignore[arg-type]
        direction,  # type: ignore[arg-type]
        counts,
        sums,
        sums_sq,
        rng=np.random.default_rng(seed),
        draws=2_000,
    )
    if res.p_best is None:
        assert metric_type == "continuous"
        assert min(counts) < 2
        return
    assert res.expected_loss is not None
    assert all(0.0 <= p <= 1.0 for p in res.p_best)
    assert math.isclose(sum(res.p_best), 1.0, abs_tol=1e-9)
    assert all(math.isfinite(v) and v >= 0.0 for v in res.expected_loss)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1, max_size=25),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.booleans(),
)
def test_sequential_p_value_never_increases_as_data_arrives(
    batches: list[tuple[int, int]], rate_arm: float, rate_control: float, one_sided: bool
) -> None:
    """The sequential p-value starts at 1, stays in [0, 1] and never increases across looks."""
    rng = np.random.default_rng(0)
    n_a = n_c = 0
    x_a = x_c = 0
    state: SequentialState | None = None
    last = 1.0
    for b_a, b_c in batches:
        n_a, n_c = n_a + b_a, n_c + b_c
        x_a += int(rng.binomial(b_a, rate_arm))
        x_c += int(rng.binomial(b_c, rate_control))
        est = var = None
        if n_a and n_c:
            p_a, p_c = x_a / n_a, x_c / n_c
            est = p_a - p_c
            var = p_a * (1 - p_a) / n_a + p_c * (1 - p_c) / n_c
        state, p = update(
            state, estimate=est, variance=var, n_arm=n_a, n_control=n_c, one_sided=one_sided
        )
        assert 0.0 <= p <= last
        assert state.p_value == p
        last = p


@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=32),
    st.floats(0, 1),
    st.lists(st.floats(0, 1), min_size=2, max_size=32),
    st.floats(0, 0.5),
)
def test_floor_and_change_cap_keep_weights_valid(
    raw: list[float], floor_frac: float, previous_raw: list[float], cap: float
) -> None:
    """Floored weights sum to 1 and respect the floor; capped moves also respect the cap."""
    k = len(raw)
    assume(len(previous_raw) >= k)
    floor = floor_frac / k
    target = apply_floor(raw, floor)
    assert math.isclose(float(target.sum()), 1.0, abs_tol=1e-9)
    assert np.all(target >= floor - 1e-12)
    previous = apply_floor(previous_raw[:k], floor)
    new = cap_change(target, previous, cap)
    assert math.isclose(float(new.sum()), 1.0, abs_tol=1e-9)
    assert np.all(new >= floor - 1e-12)
    assert np.all(np.abs(new - previous) <= cap + 1e-12)


@settings(max_examples=40, deadline=None)
@given(
    arm_totals(),
    st.sampled_from(["maximize", "minimize"]),
    st.booleans(),
    st.floats(0, 1),
    st.floats(0, 0.3),
)
def test_thompson_allocation_is_a_valid_allocation(
    totals: tuple[str, list[int], list[float], list[float]],
    direction: str,
    top_two: bool,
    floor_frac: float,
    cap: float,
) -> None:
    """Thompson weights sum to 1, respect the floor and move at most the cap per cycle."""
    metric_type, counts, sums, sums_sq = totals
    k = len(counts)
    floor = floor_frac / k
    previous = np.full(k, 1.0 / k)
    alloc = thompson_allocation(
        metric_type=metric_type,  # type: ignore[arg-type]
        direction=direction,  # type: ignore[arg-type]
        count=counts,
        sums=sums,
        sums_sq=sums_sq,
        min_arm_weight=floor,
        rng=np.random.default_rng(1),
        previous=previous,
        max_change=cap,
        top_two=top_two,
        draws=2_000,
    )
    w = np.asarray(alloc.weights)
    assert math.isclose(float(w.sum()), 1.0, abs_tol=1e-9)
    assert np.all(w >= floor - 1e-12)
    assert np.all(np.abs(w - previous) <= cap + 1e-12)
    if alloc.raw is not None:
        assert math.isclose(sum(alloc.raw), 1.0, abs_tol=1e-9)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.floats(0, 1)), min_size=1, max_size=32))
def test_srm_p_value_in_unit_interval(arms: list[tuple[int, float]]) -> None:
    """The SRM p-value, when defined, is in [0, 1] and flag is consistent with it."""
    exposures = [a for a, _ in arms]
    weights = [w for _, w in arms]
    total_w = sum(weights)
    expected = [w / total_w * sum(exposures) if total_w else 0.0 for w in weights]
    res = srm_test(exposures, expected)
    if res.p_value is None:
        assert res.flag is False
    else:
        assert 0.0 <= res.p_value <= 1.0
        assert res.flag == (res.p_value < 0.001)


def _all_finite(obj: object) -> bool:
    """True when no float anywhere inside a (nested) dataclass/tuple is NaN or infinite."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, tuple | list):
        return all(_all_finite(x) for x in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return all(_all_finite(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return True


@settings(max_examples=60, deadline=None)
@given(
    arm_totals(),
    st.sampled_from(["maximize", "minimize"]),
    alphas,
    st.data(),
)
def test_analyze_never_reports_nan_or_inf(
    totals: tuple[str, list[int], list[float], list[float]],
    direction: str,
    alpha: float,
    data: st.DataObject,
) -> None:
    """analyze() and guardrail() output only finite numbers, probabilities in [0, 1]."""
    metric_type, counts, sums, sums_sq = totals
    k = len(counts)
    control = data.draw(st.integers(0, k - 1))
    exposures = counts if metric_type == "binary" else [c + 3 for c in counts]
    report = analyze(
        metric_type=metric_type,  # type: ignore[arg-type]
        direction=direction,  # type: ignore[arg-type]
        alpha=alpha,
        control=control,
        exposures=exposures,
        expected_exposures=exposures,
        count=counts,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        rng=np.random.default_rng(0),
        draws=1_000,
    )
    assert _all_finite(report)
    assert len(report.comparisons) == k - 1
    for comp in report.comparisons:
        for p in (comp.p_value, comp.p_value_adjusted):
            assert p is None or 0.0 <= p <= 1.0
        assert 0.0 <= comp.sequential_p_value <= 1.0
        if comp.diff_ci is not None:
            assert comp.diff is not None
            assert comp.diff_ci[0] - 1e-9 <= comp.diff <= comp.diff_ci[1] + 1e-9
    for arm in report.arms:
        if arm.ci is not None:
            assert arm.mean is not None
            assert arm.ci[0] - 1e-9 <= arm.mean <= arm.ci[1] + 1e-9
    tolerance = data.draw(st.sampled_from([None, "abs", "rel"]))
    checks = guardrail(
        metric_type=metric_type,  # type: ignore[arg-type]
        direction=direction,  # type: ignore[arg-type]
        alpha=alpha,
        control=control,
        count=counts,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        max_degradation=0.1 if tolerance == "abs" else None,
        max_relative_degradation=0.1 if tolerance == "rel" else None,
    )
    assert _all_finite(checks)
    for check in checks:
        assert check.p_value is None or 0.0 <= check.p_value <= 1.0
        assert 0.0 <= check.sequential_p_value <= 1.0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.floats(-1e12, 1e12),
            st.floats(0, 1e24),
        ),
        min_size=2,
        max_size=5,
    ),
    st.sampled_from(["maximize", "minimize"]),
)
def test_analyze_is_finite_for_arbitrary_continuous_totals(
    arms: list[tuple[int, float, float]], direction: str
) -> None:
    """Even inconsistent or extreme running totals give finite output or None, never NaN."""
    counts = [a[0] for a in arms]
    sums = [a[1] for a in arms]
    sums_sq = [a[2] for a in arms]
    report = analyze(
        metric_type="continuous",
        direction=direction,  # type: ignore[arg-type]
        alpha=0.05,
        control=0,
        exposures=counts,
        expected_exposures=counts,
        count=counts,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        rng=np.random.default_rng(0),
        draws=500,
    )
    assert _all_finite(report)
    checks = guardrail(
        metric_type="continuous",
        direction=direction,  # type: ignore[arg-type]
        alpha=0.05,
        control=0,
        count=counts,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        max_relative_degradation=0.05,
    )
    assert _all_finite(checks)
