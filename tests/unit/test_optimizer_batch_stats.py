"""The optimizer's batched statistics equal the one-experiment functions, to the last bit."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest

from croupier.model import Arm, ExperimentSpec, Metric
from croupier.optimizer.analysis import KIND_GUARDRAIL, KIND_TWO_SIDED, RawStats
from croupier.optimizer.evaluate import compute, compute_many
from croupier.optimizer.recommend import recommend, uses_p_best
from croupier.optimizer.tick import RunningExperiment, plan
from croupier.settings import Settings
from croupier.stats.posterior import best_arm_integrated, best_arm_integrated_many
from croupier.stats.report import (
    AnalyzeInput,
    GuardrailInput,
    StatsInputError,
    analyze,
    analyze_many,
    guardrail,
    guardrail_many,
)
from croupier.stats.sequential import SequentialState
from croupier.stats.significance import (
    t_half_widths,
    t_interval,
    two_proportion_test,
    two_proportion_tests,
    welch_test,
    welch_tests,
    wilson_interval,
    wilson_intervals,
    z_values,
)
from croupier.stats.srm import srm_many, srm_test

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _totals(
    rng: np.random.Generator, metric_type: str, k: int, *, point_mass: bool = True
) -> dict[str, list[float]]:
    """Per-arm totals of one metric, often degenerate (no data, all 0, all 1, and unless
    `point_mass` is false zero variance)."""
    scale = int(rng.choice([0, 1, 3, 40, 500, 16_000, 10**6]))
    exposures = (scale + rng.integers(0, 50, k)).astype(float)
    if rng.random() < 0.2:
        exposures[rng.integers(0, k)] = float(rng.integers(0, 3))
    if metric_type == "binary":
        mode = rng.integers(0, 4)
        sums = np.floor(exposures * rng.random(k) * 0.2)
        if mode == 1:
            sums = exposures.copy()
        elif mode == 2:
            sums = np.zeros(k)
        return {
            "count": exposures.tolist(),
            "sums": sums.tolist(),
            "sums_sq": sums.tolist(),
            "exposures": exposures.tolist(),
        }
    count = np.floor(exposures * rng.uniform(0.0, 1.0, k))
    mean = rng.normal(300.0, 100.0, k)
    sd = rng.choice([0.0, 1.0, 50.0] if point_mass else [1.0, 50.0], size=k)
    if point_mass and rng.random() < 0.2:
        mean[:], sd[:] = 5.0, 0.0
    sums = count * mean
    sums_sq = np.maximum(count - 1.0, 0.0) * sd * sd + count * mean * mean
    return {
        "count": count.tolist(),
        "sums": sums.tolist(),
        "sums_sq": sums_sq.tolist(),
        "exposures": exposures.tolist(),
    }


def _states(rng: np.random.Generator, k: int) -> list[SequentialState | None] | None:
    if rng.random() < 0.3:
        return None
    choices = [1.0, 0.5, 0.01, 1e-9, 0.0, 2.0, math.inf, math.nan]
    return [
        None if rng.random() < 0.3 else SequentialState(float(rng.choice(choices)))
        for _ in range(k)
    ]


def _analyze_inputs(count: int, seed: int) -> list[AnalyzeInput]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        k = int(rng.integers(1, 9))
        metric_type = str(rng.choice(["binary", "continuous"]))
        t: dict[str, Any] = _totals(rng, metric_type, k)
        expected: Any = (np.asarray(t["exposures"]) * rng.uniform(0.8, 1.2, k)).tolist()
        if i % 7 == 3:  # arrays and tuples as well as lists
            t = {name: np.asarray(values) for name, values in t.items()}
        elif i % 7 == 5:
            t, expected = {name: tuple(values) for name, values in t.items()}, tuple(expected)
        out.append(
            AnalyzeInput(
                metric_type=metric_type,  # type: ignore[arg-type]
                direction=str(rng.choice(["maximize", "minimize"])),  # type: ignore[arg-type]
                alpha=float(rng.choice([0.01, 0.05, 0.2])),
                control=int(rng.integers(0, k)),
                exposures=t["exposures"],
                expected_exposures=expected,
                count=t["count"],
                sums=t["sums"],
                sums_sq=t["sums_sq"],
                sequential_states=_states(rng, k),
            )
        )
    return out


@pytest.mark.parametrize("integrate", [True, False])
def test_analyze_many_equals_analyze_one_at_a_time(integrate: bool) -> None:
    """analyze_many gives each input exactly what analyze gives it alone, drawing from the rng
    in the same order (every draw, or with integration only the fallbacks); an invalid input
    gets the error analyze raises for it, and the others are not affected."""
    inputs = _analyze_inputs(300, seed=1)
    bad = [
        AnalyzeInput("binary", "maximize", 1.5, 0, [1, 1], [1, 1], [1, 1], [0, 0], [0, 0]),
        AnalyzeInput("binary", "maximize", 0.05, 0, [1, 1], [1, 1], [1, 1], [0, math.nan], [0, 0]),
        AnalyzeInput("continuous", "maximize", 0.05, 0, [9, 9], [9, 9], [-1, 9], [0, 0], [0, 0]),
        AnalyzeInput("binary", "maximize", 0.05, 0, [5, 5], [5, 5], [5, 5], [6, 0], [6, 0]),
        AnalyzeInput("binary", "maximize", 0.05, 0, [5, 5], [5, 5], [5], [0, 0], [0, 0]),
        AnalyzeInput("binary", "maximize", 0.05, 2, [5, 5], [5, 5], [5, 5], [0, 0], [0, 0]),
        AnalyzeInput("binary", "maximize", 0.05, 0, [], [], [], [], []),
        AnalyzeInput("binary", "maximize", 0.05, 0, [5, 5], [5, 5], [5, 5], [0, 0], [0, 0], [None]),
    ]
    for j, item in enumerate(bad):
        inputs.insert(7 + 20 * j, item)
    one_rng, many_rng = np.random.default_rng(5), np.random.default_rng(5)
    expected: list[Any] = []
    for item in inputs:
        try:
            expected.append(
                analyze(
                    metric_type=item.metric_type,
                    direction=item.direction,
                    alpha=item.alpha,
                    control=item.control,
                    exposures=item.exposures,
                    expected_exposures=item.expected_exposures,
                    count=item.count,
                    sums=item.sums,
                    sums_sq=item.sums_sq,
                    sequential_states=item.sequential_states,
                    rng=one_rng,
                    draws=500,
                    integrate=integrate,
                )
            )
        except StatsInputError as exc:
            expected.append(str(exc))
    got = analyze_many(inputs, rng=many_rng, draws=500, integrate=integrate)
    assert [str(g) if isinstance(g, StatsInputError) else g for g in got] == expected
    assert all(isinstance(got[7 + 20 * j], StatsInputError) for j in range(len(bad)))


def test_guardrail_many_equals_guardrail_one_at_a_time() -> None:
    """guardrail_many gives each input exactly what guardrail gives it alone (mixed metric
    types, directions and tolerances in one batch)."""
    rng = np.random.default_rng(2)
    inputs = []
    for _ in range(300):
        k = int(rng.integers(1, 9))
        metric_type = str(rng.choice(["binary", "continuous"]))
        t = _totals(rng, metric_type, k)
        tolerance = rng.random()
        inputs.append(
            GuardrailInput(
                metric_type=metric_type,  # type: ignore[arg-type]
                direction=str(rng.choice(["maximize", "minimize"])),  # type: ignore[arg-type]
                alpha=0.05,
                control=int(rng.integers(0, k)),
                count=t["count"],
                sums=t["sums"],
                sums_sq=t["sums_sq"],
                sequential_states=_states(rng, k),
                max_degradation=float(rng.choice([0.0, 0.01, 5.0])) if tolerance < 0.4 else None,
                max_relative_degradation=0.2 if 0.4 <= tolerance < 0.8 else None,
            )
        )
    bad = [
        GuardrailInput("binary", "maximize", 0.05, 0, [5, 5], [0, 0], [0, 0], None, 0.1, 0.1),
        GuardrailInput("binary", "maximize", 0.05, 0, [5, 5], [0, 0], [0, 0], None, -0.1),
        GuardrailInput("continuous", "minimize", 0.05, 0, [5, 5], [0, math.inf], [0, 0]),
        GuardrailInput("binary", "maximize", 0.05, 3, [5, 5], [0, 0], [0, 0]),
        GuardrailInput("binary", "maximize", 0.05, 0, [], [], []),
    ]
    for j, item in enumerate(bad):
        inputs.insert(5 + 30 * j, item)
    expected: list[Any] = []
    for i in inputs:
        try:
            expected.append(
                guardrail(
                    metric_type=i.metric_type,
                    direction=i.direction,
                    alpha=i.alpha,
                    control=i.control,
                    count=i.count,
                    sums=i.sums,
                    sums_sq=i.sums_sq,
                    sequential_states=i.sequential_states,
                    max_degradation=i.max_degradation,
                    max_relative_degradation=i.max_relative_degradation,
                )
            )
        except StatsInputError as exc:
            expected.append(str(exc))
    got = guardrail_many(inputs)
    assert [str(g) if isinstance(g, StatsInputError) else g for g in got] == expected
    assert all(isinstance(got[5 + 30 * j], StatsInputError) for j in range(len(bad)))


def test_integration_of_many_experiments_equals_one_at_a_time() -> None:
    """Integrating experiments together (chunked, sharing arrays) changes no bit of any result,
    including the undefined (None p_best) and not-applicable (None) ones."""
    rng = np.random.default_rng(3)
    for metric_type in ("binary", "continuous"):
        for k in (1, 2, 5, 8):
            rows = [_totals(rng, metric_type, k) for _ in range(25)]
            n = np.array([r["count"] for r in rows])
            s = np.array([r["sums"] for r in rows])
            ss = np.array([r["sums_sq"] for r in rows])
            for direction in ("maximize", "minimize"):
                many = best_arm_integrated_many(metric_type, direction, n, s, ss)  # type: ignore[arg-type]
                one = [
                    best_arm_integrated(metric_type, direction, n[e], s[e], ss[e])  # type: ignore[arg-type]
                    for e in range(len(rows))
                ]
                assert many == one


def test_vectorised_tests_equal_the_scalar_ones() -> None:
    """The vectorised interval and test functions give the scalar functions' numbers (NaN where
    those give None)."""
    rng = np.random.default_rng(4)
    size = 2000
    n_a = rng.choice([0, 1, 2, 5, 100, 10**5], size=size).astype(float)
    n_c = rng.choice([0, 1, 2, 5, 100, 10**5], size=size).astype(float)
    x_a, x_c = np.floor(n_a * rng.random(size)), np.floor(n_c * rng.random(size))
    alpha = rng.choice([0.01, 0.05, 0.2], size=size)
    z = z_values(alpha.tolist())

    def same(got: float, want: float | None) -> bool:
        return (want is None and math.isnan(got)) or got == want

    lo, hi = wilson_intervals(x_a, n_a, z)
    p_lo, p_hi, p = two_proportion_tests(x_a, n_a, x_c, n_c, z)
    mean_a, mean_c = rng.normal(0, 5, size), rng.normal(0, 5, size)
    std_a, std_c = rng.choice([0.0, 1.0, 3.0], size=size), rng.choice([0.0, 2.0], size=size)
    half = t_half_widths(std_a, n_a, alpha)
    w_lo, w_hi, w_p = welch_tests(mean_a, std_a, n_a, mean_c, std_c, n_c, alpha)
    for i in range(size):
        a, c, al = int(n_a[i]), int(n_c[i]), float(alpha[i])
        ci = wilson_interval(float(x_a[i]), a, alpha=al)
        assert same(lo[i], None if ci is None else ci[0]) and same(
            hi[i], None if ci is None else ci[1]
        )
        t = two_proportion_test(float(x_a[i]), a, float(x_c[i]), c, alpha=al)
        assert same(p[i], None if t is None else t.p_value)
        assert same(p_lo[i], None if t is None or t.diff_ci is None else t.diff_ci[0])
        assert same(p_hi[i], None if t is None or t.diff_ci is None else t.diff_ci[1])
        ti = t_interval(float(mean_a[i]), float(std_a[i]), a, alpha=al)
        assert same(mean_a[i] + half[i], None if ti is None else ti[1])
        w = welch_test(
            float(mean_a[i]), float(std_a[i]), a, float(mean_c[i]), float(std_c[i]), c, alpha=al
        )
        assert same(w_p[i], None if w is None else w.p_value)
        assert same(w_lo[i], None if w is None or w.diff_ci is None else w.diff_ci[0])
        assert same(w_hi[i], None if w is None or w.diff_ci is None else w.diff_ci[1])


def test_srm_many_equals_srm_test() -> None:
    """srm_many gives every experiment srm_test's result (no exposures, an arm expected to get
    nothing, a mismatch, a match)."""
    cases = [
        ([0, 0], [0.0, 0.0]),
        ([10, 0], [10.0, 0.0]),
        ([0, 10, 5], [0.0, 7.5, 7.5]),
        ([1000, 1200, 900], [1033.3, 1033.3, 1033.4]),
        ([5000, 5100, 4900, 5000, 5000, 5100, 4900, 5000, 4999], [5000.0] * 9),
        ([7], [7.0]),
        ([10, 20], [0.0, 30.0]),
    ]
    exposures = np.concatenate([np.asarray(e, dtype=float) for e, _ in cases])
    expected = np.concatenate([np.asarray(x, dtype=float) for _, x in cases])
    got = srm_many(exposures, expected, [len(e) for e, _ in cases])
    assert got == [srm_test(e, x) for e, x in cases]


def _raw(rng: np.random.Generator, i: int, *, point_mass: bool = True) -> RawStats:
    k = int(rng.integers(2, 7))
    primary_type = str(rng.choice(["binary", "continuous"]))
    metrics = [
        Metric(name="reward", type=primary_type),  # type: ignore[arg-type]
        Metric(
            name="latency_ms", type="continuous", direction="minimize", max_relative_degradation=0.2
        ),
        Metric(name="error", type="binary", direction="minimize", max_degradation=0.02),
        Metric(name="watched", type="continuous"),  # not a guardrail: no tolerance
    ]
    spec = ExperimentSpec(
        key=f"e{i}",
        policy=str(rng.choice(["thompson", "fixed"])),  # type: ignore[arg-type]
        sticky=False,
        arms=[Arm(key=f"a{j}", control=j == 1) for j in range(k)],
        metrics=metrics,
        confidence_level=float(rng.choice([0.9, 0.95])),
    )
    exposures = rng.integers(0, 5000, k).tolist()
    per_metric: dict[str, list[tuple[int, float, float]]] = {}
    for m in metrics:
        t = _totals(rng, m.type, k, point_mass=point_mass or m.name != "reward")
        if m.type == "binary":
            t["count"] = [float(e) for e in exposures]
            t["sums"] = [min(s, float(e)) for s, e in zip(t["sums"], exposures, strict=True)]
            t["sums_sq"] = t["sums"]
        per_metric[m.name] = [
            (int(c), s, q) for c, s, q in zip(t["count"], t["sums"], t["sums_sq"], strict=True)
        ]
    sequential = {}
    for key in (("reward", KIND_TWO_SIDED), ("latency_ms", KIND_GUARDRAIL)):
        states = _states(rng, k)
        if states is not None:
            sequential[key] = [None if s is None else s.p_value for s in states]
    return RawStats(
        experiment_id=i,
        spec=spec,
        status="running",
        weights=[1.0 / k] * k,
        exposures=exposures,
        expected_exposures=[float(e) for e in exposures],
        metrics=per_metric,
        sequential=sequential,
        stage_index=None,
        stage_started_at=None,
        started_at=NOW,
        stage_exposures=0,
        disabled_arms=frozenset(),
        computed_at=NOW,
        allocation_id=1,
    )


def test_compute_many_equals_compute_one_at_a_time() -> None:
    """The optimizer's batched statistics give every experiment exactly what `compute` gives
    it alone (same reports, same guardrail checks, same failures), drawing from the rng in the
    same order."""
    rng = np.random.default_rng(6)
    raws = [_raw(rng, i) for i in range(200)]
    broken = raws[3]
    raws[3] = RawStats(
        **{
            **{f: getattr(broken, f) for f in broken.__dataclass_fields__},
            "exposures": [-1] * len(broken.exposures),
        }
    )
    one_rng, many_rng = np.random.default_rng(9), np.random.default_rng(9)
    expected: list[Any] = []
    for raw in raws:
        try:
            expected.append(compute(raw, one_rng, integrate=True))
        except StatsInputError as exc:
            expected.append(str(exc))
    got = compute_many(raws, many_rng, integrate=True)
    assert [str(g) if isinstance(g, Exception) else g for g in got] == expected
    assert isinstance(got[3], StatsInputError)
    assert all(
        set(checks) == {"latency_ms", "error"}
        for _, checks in (g for g in got if not isinstance(g, Exception))
    )


def _decisions(raw: RawStats, primary: Any, checks: Any) -> tuple[Any, Any]:
    """The recommendation and the planned change of one evaluation (at a time past every
    duration limit, so the limit rules act)."""
    later = datetime(2027, 1, 1, tzinfo=UTC)
    rec = recommend(
        spec=raw.spec,
        status=raw.status,
        primary=primary,
        guardrails=checks,
        exposures=raw.exposures,
        stage_index=raw.stage_index,
        stage_started_at=raw.stage_started_at,
        started_at=raw.started_at,
        now=later,
        stage_exposures=raw.stage_exposures,
        disabled_arms=raw.disabled_arms,
    )
    change = plan(
        RunningExperiment.from_raw(raw),
        raw,
        rec,
        Settings(),
        np.random.default_rng(0),
        now=later,
        primary=primary,
    )
    return rec, change


def test_p_best_only_where_used_changes_no_decision() -> None:
    """With P(best) computed only where the recommendation can read it, experiments that use
    it get exactly the same statistics, the others the same statistics without P(best) — and
    every recommendation and planned change is the same as with P(best) everywhere.

    (No primary posterior here is a point mass: integration then falls back to Monte Carlo,
    and an experiment that skips P(best) takes no seed from the cycle's generator, so the
    draws of later fallbacks would come from other seeds.)"""
    rng = np.random.default_rng(7)
    raws = []
    for i in range(240):
        raw = _raw(rng, i, point_mass=False)
        policy = ("thompson", "fixed", "rollout")[i % 3]
        limits: dict[str, Any] = {}
        if i % 4 == 1:
            limits["max_exposures"] = int(rng.integers(1, 20_000))
        elif i % 4 == 2:
            limits["max_duration_s"] = 3600.0
        arms = raw.spec.arms
        if policy == "rollout":
            arms = [Arm(key="a0", control=True), Arm(key="a1")]
            raw = _raw_with_arms(raw, 2)
        spec = msgspec.structs.replace(
            raw.spec, policy=policy, arms=arms, min_exposures_per_arm=50, **limits
        )
        raws.append(RawStats(**{**_fields(raw), "spec": spec}))
    full = compute_many(raws, np.random.default_rng(1), integrate=True)
    lean = compute_many(raws, np.random.default_rng(1), integrate=True, p_best_where_used=True)
    used = 0
    for raw, a, b in zip(raws, full, lean, strict=True):
        assert not isinstance(a, Exception) and not isinstance(b, Exception)
        if uses_p_best(raw.spec):
            used += 1
            assert a == b
        else:
            assert all(arm.p_best is None and arm.expected_loss is None for arm in b[0].arms)
            assert (
                dataclasses.replace(
                    b[0],
                    arms=a[0].arms,
                    seed=a[0].seed,
                    draws=a[0].draws,
                )
                == a[0]
            )
            assert b[1] == a[1]
        assert _decisions(raw, *a) == _decisions(raw, *b)
    assert 0 < used < len(raws)


def _fields(raw: RawStats) -> dict[str, Any]:
    return {f: getattr(raw, f) for f in raw.__dataclass_fields__}


def _raw_with_arms(raw: RawStats, k: int) -> RawStats:
    """The same experiment cut to its first k arms (arm 0 the control)."""
    return RawStats(
        **{
            **_fields(raw),
            "weights": [1.0 / k] * k,
            "exposures": raw.exposures[:k],
            "expected_exposures": raw.expected_exposures[:k],
            "metrics": {name: per_arm[:k] for name, per_arm in raw.metrics.items()},
            "sequential": {key: per_arm[:k] for key, per_arm in raw.sequential.items()},
        }
    )
