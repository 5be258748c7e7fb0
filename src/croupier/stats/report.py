# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""The one entry point the results endpoint and the optimizer call: :func:`analyze`.

Inputs are per-arm running totals (numpy arrays, one entry per arm, in the experiment's arm
order) plus the stored sequential state of each comparison; the output is a tree of frozen
dataclasses whose fields are plain floats, ints, bools or None (never NaN or infinity), ready
to be copied into the API's response Structs. :func:`guardrail` does the same for one guardrail
metric.

Structurally invalid input (arrays of different lengths, negative counts, a binary sum outside
[0, exposures], non-finite totals, a control index out of range) raises
:class:`StatsInputError`; merely degenerate input (no data yet, zero variance, a control mean
of 0) never raises and yields None where a quantity is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from croupier.stats import sequential
from croupier.stats.posterior import (
    DEFAULT_DRAWS,
    BestArm,
    Direction,
    MetricType,
    best_arm,
    best_arm_integrated,
)
from croupier.stats.sequential import SequentialState
from croupier.stats.significance import (
    Interval,
    holm,
    lift,
    t_interval,
    two_proportion_test,
    welch_satterthwaite_df,
    welch_test,
    wilson_interval,
)
from croupier.stats.srm import SrmResult, srm_test
from croupier.stats.sufficient import FloatArray


class StatsInputError(ValueError):
    """The per-arm totals are inconsistent; the message names the offending input."""


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """Per-arm statistics of one metric.

    Attributes:
        arm: index of the arm in the input arrays.
        exposures: counted decisions that got this arm.
        expected_exposures: Σ over counted decisions of this arm's weight at decision time.
        count: observations: exposures (binary) or rewards reported (continuous).
        sum: sum of the rewards.
        mean: sum / count; None when count is 0.
        std: binary √(mean(1 − mean)); continuous sample std (ddof 1), None when count < 2.
        ci: two-sided (1 − α) interval for the mean: Wilson (binary), Student t (continuous);
            None when mean or std is undefined.
        p_best: posterior probability that this arm is the best; None when undefined.
        expected_loss: posterior expected shortfall from the best arm, in the metric's units;
            None when undefined.
    """

    arm: int
    exposures: int
    expected_exposures: float
    count: int
    sum: float
    mean: float | None
    std: float | None
    ci: Interval | None
    p_best: float | None
    expected_loss: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One non-control arm against the control on the primary metric.

    Attributes:
        arm: index of the arm.
        control: index of the control arm (the "vs").
        diff: arm mean − control mean; None when either mean is undefined.
        diff_ci: two-sided (1 − α) interval for diff (unpooled Wald for binary,
            Welch–Satterthwaite t for continuous); None when undefined.
        lift: diff / control mean; None when undefined or the control mean is 0.
        p_value: two-sided fixed-horizon p-value (pooled z-test for binary, Welch for
            continuous); None when undefined. Not valid under repeated looks.
        p_value_adjusted: Holm-adjusted p_value across the non-control arms; None when
            p_value is None.
        sequential_p_value: always-valid mSPRT p-value; 1.0 at the start, never increasing.
        significant: sequential_p_value < α.
        state: the sequential state to store for the next look.
    """

    arm: int
    control: int
    diff: float | None
    diff_ci: Interval | None
    lift: float | None
    p_value: float | None
    p_value_adjusted: float | None
    sequential_p_value: float
    significant: bool
    state: SequentialState


@dataclass(frozen=True, slots=True)
class MetricReport:
    """Everything the results endpoint reports for the primary metric.

    Attributes:
        alpha: 1 − confidence level; every interval is two-sided at it.
        arms: per-arm summaries, in input order.
        comparisons: one per non-control arm, in input order.
        srm: sample-ratio-mismatch check of exposures against expected exposures.
        sequential_states: per arm, the state to store (None for the control).
        seed: seed of the Monte Carlo draws behind p_best and expected_loss.
        draws: number of Monte Carlo draws.
    """

    alpha: float
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    srm: SrmResult
    sequential_states: tuple[SequentialState | None, ...]
    seed: int
    draws: int


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One non-control arm against the control on one guardrail metric.

    The null hypothesis is "the arm is not worse than the control by more than the tolerance";
    rejecting it (``breached``) is what triggers a rollback.

    Attributes:
        arm: index of the arm.
        control: index of the control arm.
        diff: arm mean − control mean; None when either mean is undefined.
        p_value: one-sided fixed-horizon p-value for a degradation beyond the tolerance; None
            when undefined. Not valid under repeated looks.
        sequential_p_value: one-sided always-valid p-value; 1.0 at the start, never increasing.
        breached: sequential_p_value < α.
        state: the sequential state to store for the next look.
    """

    arm: int
    control: int
    diff: float | None
    p_value: float | None
    sequential_p_value: float
    breached: bool
    state: SequentialState


@dataclass(frozen=True, slots=True)
class _Totals:
    n: FloatArray
    sums: FloatArray
    mean: list[float | None]
    std: list[float | None]


def _as_array(name: str, values: npt.ArrayLike, k: int | None) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if k is not None and arr.size != k:
        raise StatsInputError(f"{name} has {arr.size} entries but there are {k} arms.")
    if not np.all(np.isfinite(arr)):
        raise StatsInputError(f"{name} must contain only finite numbers.")
    return arr


def _totals(
    metric_type: MetricType,
    exposures: FloatArray,
    count: FloatArray,
    sums: FloatArray,
    sums_sq: FloatArray,
) -> _Totals:
    n = exposures if metric_type == "binary" else count
    if np.any(n < 0):
        raise StatsInputError("counts and exposures must be non-negative.")
    if metric_type == "binary" and np.any((sums < 0) | (sums > n * (1 + 1e-9) + 1e-9)):
        raise StatsInputError("a binary metric's sum must be between 0 and the exposures.")
    mean: list[float | None] = []
    std: list[float | None] = []
    for n_i, s_i, ss_i in zip(n.tolist(), sums.tolist(), sums_sq.tolist(), strict=True):
        if n_i <= 0:
            mean.append(None)
            std.append(None)
            continue
        m = s_i / n_i
        if metric_type == "binary":
            m = min(1.0, max(0.0, m))
            v = m * (1.0 - m)
            std.append(math.sqrt(v))
        elif n_i >= 2:
            v = max(0.0, (ss_i - s_i * m) / (n_i - 1))
            std.append(math.sqrt(v))
        else:
            std.append(None)
        mean.append(m)
    return _Totals(n=n, sums=sums, mean=mean, std=std)


def _finite(value: float | None) -> float | None:
    """The value itself when it is a finite float, else None (the last guard before JSON)."""
    return value if value is not None and math.isfinite(value) else None


def _finite_ci(ci: Interval | None) -> Interval | None:
    if ci is None or not (math.isfinite(ci[0]) and math.isfinite(ci[1])):
        return None
    return ci


def _check_control(control: int, k: int) -> None:
    if not 0 <= control < k:
        raise StatsInputError(f"control index {control} is out of range for {k} arms.")


def _states(states: Sequence[SequentialState | None] | None, k: int) -> list[SequentialState]:
    if states is None:
        return [sequential.INITIAL_STATE] * k
    if len(states) != k:
        raise StatsInputError(
            f"sequential_states has {len(states)} entries but there are {k} arms."
        )
    return [s or sequential.INITIAL_STATE for s in states]


def analyze(
    *,
    metric_type: MetricType,
    direction: Direction,
    alpha: float,
    control: int,
    exposures: npt.ArrayLike,
    expected_exposures: npt.ArrayLike,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    sequential_states: Sequence[SequentialState | None] | None,
    rng: np.random.Generator,
    draws: int = DEFAULT_DRAWS,
    integrate: bool = False,
) -> MetricReport:
    """Per-arm summaries, comparisons against the control, SRM and P(best) for one metric.

    For a binary metric ``count`` is ignored: the count is the exposures (a decision without a
    reward is a 0). ``sequential_states`` holds the state stored at the previous look (None
    entries, or None altogether, at the start). P(best) and expected loss come from ``draws``
    seeded Monte Carlo draws, or with ``integrate`` from numerical integration
    (:func:`~croupier.stats.posterior.best_arm_integrated`; seed and draws 0), falling back to
    the draws where integration does not apply (a point-mass posterior).
    """
    if not 0.0 < alpha < 1.0:
        raise StatsInputError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    exp_a = _as_array("exposures", exposures, None)
    k = exp_a.size
    if k == 0:
        raise StatsInputError("there must be at least one arm.")
    _check_control(control, k)
    expected_a = _as_array("expected_exposures", expected_exposures, k)
    count_a = _as_array("count", count, k)
    sums_a = _as_array("sums", sums, k)
    sums_sq_a = _as_array("sums_sq", sums_sq, k)
    states = _states(sequential_states, k)
    t = _totals(metric_type, exp_a, count_a, sums_a, sums_sq_a)

    best: BestArm | None = None
    if integrate:
        best = best_arm_integrated(metric_type, direction, t.n, sums_a, sums_sq_a)
    if best is None:
        best = best_arm(metric_type, direction, t.n, sums_a, sums_sq_a, rng=rng, draws=draws)

    arms: list[ArmSummary] = []
    for i in range(k):
        n_i = round(t.n[i])
        m, s = t.mean[i], t.std[i]
        ci: Interval | None = None
        if metric_type == "binary":
            ci = wilson_interval(float(sums_a[i]), n_i, alpha=alpha)
        elif m is not None and s is not None:
            ci = t_interval(m, s, n_i, alpha=alpha)
        arms.append(
            ArmSummary(
                arm=i,
                exposures=round(exp_a[i]),
                expected_exposures=float(expected_a[i]),
                count=n_i,
                sum=float(sums_a[i]),
                mean=_finite(m),
                std=_finite(s),
                ci=_finite_ci(ci),
                p_best=None if best.p_best is None else best.p_best[i],
                expected_loss=_finite(best.expected_loss[i] if best.expected_loss else None),
            )
        )

    c = control
    others = [i for i in range(k) if i != c]
    raw: list[tuple[float | None, Interval | None, float | None]] = []
    new_states: list[SequentialState | None] = [None] * k
    seq_p: dict[int, float] = {}
    idx = np.asarray(others, dtype=np.intp)
    all_terms = sequential.difference_terms(
        metric_type, t.n[idx], sums_a[idx], sums_sq_a[idx], t.n[c], sums_a[c], sums_sq_a[c]
    )
    seq_variances = [_finite(v) for v in np.broadcast_to(all_terms.variance, idx.shape).tolist()]
    seq_n_arm: list[int] = []
    for i in others:
        m_i, m_c = t.mean[i], t.mean[c]
        diff = None if m_i is None or m_c is None else m_i - m_c
        n_i, n_c = round(t.n[i]), round(t.n[c])
        test = None
        if metric_type == "binary":
            test = two_proportion_test(float(sums_a[i]), n_i, float(sums_a[c]), n_c, alpha=alpha)
        else:
            s_i, s_c = t.std[i], t.std[c]
            if m_i is not None and m_c is not None and s_i is not None and s_c is not None:
                test = welch_test(m_i, s_i, n_i, m_c, s_c, n_c, alpha=alpha)
        seq_n_arm.append(n_i)
        raw.append(
            (diff, None if test is None else test.diff_ci, None if test is None else test.p_value)
        )
    looks = sequential.update_many(
        [states[i] for i in others],
        estimates=[d for d, _, _ in raw],
        variances=seq_variances,
        n_arm=seq_n_arm,
        n_control=round(t.n[c]),
    )
    for i, (state, p_seq) in zip(others, looks, strict=True):
        new_states[i] = state
        seq_p[i] = p_seq

    adjusted = holm([p for _, _, p in raw])
    comparisons = []
    for j, i in enumerate(others):
        diff, diff_ci, p_value = raw[j]
        new_state = new_states[i]
        assert new_state is not None
        comparisons.append(
            Comparison(
                arm=i,
                control=c,
                diff=_finite(diff),
                diff_ci=_finite_ci(diff_ci),
                lift=_finite(lift(diff, t.mean[c])),
                p_value=_finite(p_value),
                p_value_adjusted=_finite(adjusted[j]),
                sequential_p_value=seq_p[i],
                significant=seq_p[i] < alpha,
                state=new_state,
            )
        )

    return MetricReport(
        alpha=alpha,
        arms=tuple(arms),
        comparisons=tuple(comparisons),
        srm=srm_test(exp_a, expected_a),
        sequential_states=tuple(new_states),
        seed=best.seed,
        draws=best.draws,
    )


def guardrail(
    *,
    metric_type: MetricType,
    direction: Direction,
    alpha: float,
    control: int,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    sequential_states: Sequence[SequentialState | None] | None,
    max_degradation: float | None = None,
    max_relative_degradation: float | None = None,
) -> tuple[GuardrailCheck, ...]:
    """One-sided test, per non-control arm, of "worse than control by more than the tolerance".

    "Worse" follows ``direction``: lower when maximizing, higher when minimizing. With an
    absolute tolerance m the excess harm is h = ±(control − arm) − m; with a relative tolerance
    r it is h = (1 − r)·control − arm (maximize) or arm − (1 + r)·control (minimize), r applied
    to |control mean|. H0: h ≤ 0 is rejected (``breached``) when the one-sided always-valid
    p-value drops below α. With no tolerance any significant degradation is a breach. For a
    binary guardrail ``count`` is the exposures.
    """
    if not 0.0 < alpha < 1.0:
        raise StatsInputError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    if max_degradation is not None and max_relative_degradation is not None:
        raise StatsInputError("give max_degradation or max_relative_degradation, not both.")
    for name, tol in (
        ("max_degradation", max_degradation),
        ("max_relative_degradation", max_relative_degradation),
    ):
        if tol is not None and (not math.isfinite(tol) or tol < 0.0):
            raise StatsInputError(f"{name} must be a non-negative finite number, got {tol!r}.")
    count_a = _as_array("count", count, None)
    k = count_a.size
    _check_control(control, k)
    sums_a = _as_array("sums", sums, k)
    sums_sq_a = _as_array("sums_sq", sums_sq, k)
    states = _states(sequential_states, k)
    t = _totals(metric_type, count_a, count_a, sums_a, sums_sq_a)
    c = control
    others = [i for i in range(k) if i != c]
    idx = np.asarray(others, dtype=np.intp)
    all_terms = sequential.degradation_terms(
        metric_type,
        direction,
        t.n[idx],
        sums_a[idx],
        sums_sq_a[idx],
        t.n[c],
        sums_a[c],
        sums_sq_a[c],
        max_degradation=max_degradation,
        max_relative_degradation=max_relative_degradation,
    )
    estimates = np.broadcast_to(all_terms.estimate, idx.shape).tolist()
    var_arm = np.broadcast_to(all_terms.var_arm, idx.shape).tolist()
    var_control = np.broadcast_to(all_terms.var_control, idx.shape).tolist()
    n_c = round(t.n[c])
    partial: list[tuple[int, float | None, float | None, float | None, int]] = []
    for j, i in enumerate(others):
        m_i, m_c = t.mean[i], t.mean[c]
        n_i = round(t.n[i])
        diff = None if m_i is None or m_c is None else m_i - m_c
        harm = _finite(float(estimates[j]))
        v_i, w_c = _finite(float(var_arm[j])), _finite(float(var_control[j]))
        var = None if v_i is None or w_c is None else v_i + w_c
        p_value: float | None = None
        if harm is not None and v_i is not None and w_c is not None and var is not None:
            if var > 0.0:
                z = harm / math.sqrt(var)
                if metric_type == "continuous":
                    df = welch_satterthwaite_df(v_i, n_i, w_c, n_c)
                    p_value = min(1.0, max(0.0, float(special.stdtr(df, -z))))
                else:
                    p_value = min(1.0, max(0.0, float(special.ndtr(-z))))
            else:
                p_value = 0.0 if harm > 0.0 else 1.0
        partial.append((i, diff, p_value, harm, n_i))
    looks = sequential.update_many(
        [states[i] for i in others],
        estimates=[harm for _, _, _, harm, _ in partial],
        variances=[
            None if v_i is None or w_c is None else v_i + w_c
            for v_i, w_c in (
                (_finite(a), _finite(b)) for a, b in zip(var_arm, var_control, strict=True)
            )
        ],
        n_arm=[n_i for *_, n_i in partial],
        n_control=n_c,
        one_sided=True,
    )
    out: list[GuardrailCheck] = []
    for (i, diff, p_value, _, _), (state, p_seq) in zip(partial, looks, strict=True):
        out.append(
            GuardrailCheck(
                arm=i,
                control=c,
                diff=_finite(diff),
                p_value=_finite(p_value),
                sequential_p_value=p_seq,
                breached=p_seq < alpha,
                state=state,
            )
        )
    return tuple(out)
