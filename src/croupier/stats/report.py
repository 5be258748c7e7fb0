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
from typing import Any, TypeVar

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
    best_arm_integrated_many,
)
from croupier.stats.sequential import SequentialState
from croupier.stats.significance import (
    Interval,
    clip01,
    holm,
    lift,
    t_half_widths,
    two_proportion_tests,
    welch_satterthwaite_dfs,
    welch_tests,
    wilson_intervals,
    z_values,
)
from croupier.stats.srm import SrmResult, srm_many
from croupier.stats.sufficient import FloatArray

_T = TypeVar("_T")


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
class AnalyzeInput:
    """The per-experiment arguments of :func:`analyze`, for :func:`analyze_many`.

    ``sequential_states`` may also hold the stored p-values themselves (a float in place of
    ``SequentialState(p)``). ``p_best`` False skips P(best) and expected loss (every arm's are
    None, seed and draws 0, and no draw is taken from the rng) for a caller that will not read
    them.
    """

    metric_type: MetricType
    direction: Direction
    alpha: float
    control: int
    exposures: npt.ArrayLike
    expected_exposures: npt.ArrayLike
    count: npt.ArrayLike
    sums: npt.ArrayLike
    sums_sq: npt.ArrayLike
    sequential_states: Sequence[SequentialState | float | None] | None = None
    p_best: bool = True


@dataclass(frozen=True, slots=True)
class GuardrailInput:
    """The arguments of :func:`guardrail`, for :func:`guardrail_many` (``sequential_states``
    as in :class:`AnalyzeInput`)."""

    metric_type: MetricType
    direction: Direction
    alpha: float
    control: int
    count: npt.ArrayLike
    sums: npt.ArrayLike
    sums_sq: npt.ArrayLike
    sequential_states: Sequence[SequentialState | float | None] | None = None
    max_degradation: float | None = None
    max_relative_degradation: float | None = None


@dataclass(frozen=True, slots=True)
class _Checked:
    """One experiment's validated totals of one metric (``n``: the counts the statistics use,
    exposures for a binary metric)."""

    metric_type: MetricType
    direction: Direction
    alpha: float
    control: int
    n: FloatArray
    sums: FloatArray
    sums_sq: FloatArray
    previous: list[float]
    exposures: FloatArray | None = None
    expected_exposures: FloatArray | None = None
    p_best: bool = True
    max_degradation: float | None = None
    max_relative_degradation: float | None = None


def _as_array(name: str, values: npt.ArrayLike, k: int | None) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if k is not None and arr.size != k:
        raise StatsInputError(f"{name} has {arr.size} entries but there are {k} arms.")
    if not np.all(np.isfinite(arr)):
        raise StatsInputError(f"{name} must contain only finite numbers.")
    return arr


def _check_counts(metric_type: MetricType, n: FloatArray, sums: FloatArray) -> None:
    if np.any(n < 0):
        raise StatsInputError("counts and exposures must be non-negative.")
    if metric_type == "binary" and np.any((sums < 0) | (sums > n * (1 + 1e-9) + 1e-9)):
        raise StatsInputError("a binary metric's sum must be between 0 and the exposures.")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise StatsInputError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")


def _finite(value: float | None) -> float | None:
    """The value itself when it is a finite float, else None (the last guard before JSON)."""
    return value if value is not None and math.isfinite(value) else None


def _finite_ci(lo: float, hi: float) -> Interval | None:
    """(lo, hi) when both are finite, else None (NaN marks an undefined interval)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (lo, hi)


def _check_control(control: int, k: int) -> None:
    if not 0 <= control < k:
        raise StatsInputError(f"control index {control} is out of range for {k} arms.")


def _previous(states: Sequence[SequentialState | float | None] | None, k: int) -> list[float]:
    """The stored p-value of each arm as the sequential update reads it (1.0 at the start)."""
    if states is None:
        return [1.0] * k
    if len(states) != k:
        raise StatsInputError(
            f"sequential_states has {len(states)} entries but there are {k} arms."
        )
    out: list[float] = []
    for state in states:
        stored = (
            1.0 if state is None else state.p_value if isinstance(state, SequentialState) else state
        )
        out.append(min(1.0, max(0.0, stored)) if math.isfinite(stored) else 1.0)
    return out


def _check_analyze(item: AnalyzeInput) -> _Checked:
    _check_alpha(item.alpha)
    exp_a = _as_array("exposures", item.exposures, None)
    k = exp_a.size
    if k == 0:
        raise StatsInputError("there must be at least one arm.")
    _check_control(item.control, k)
    expected_a = _as_array("expected_exposures", item.expected_exposures, k)
    count_a = _as_array("count", item.count, k)
    sums_a = _as_array("sums", item.sums, k)
    sums_sq_a = _as_array("sums_sq", item.sums_sq, k)
    previous = _previous(item.sequential_states, k)
    n = exp_a if item.metric_type == "binary" else count_a
    _check_counts(item.metric_type, n, sums_a)
    return _analyze_checked(item, exp_a, expected_a, n, sums_a, sums_sq_a, previous)


def _analyze_checked(
    item: AnalyzeInput,
    exposures: FloatArray,
    expected: FloatArray,
    n: FloatArray,
    sums: FloatArray,
    sums_sq: FloatArray,
    previous: list[float],
) -> _Checked:
    return _Checked(
        metric_type=item.metric_type,
        direction=item.direction,
        alpha=item.alpha,
        control=item.control,
        n=n,
        sums=sums,
        sums_sq=sums_sq,
        previous=previous,
        exposures=exposures,
        expected_exposures=expected,
        p_best=item.p_best,
    )


def _check_tolerances(item: GuardrailInput) -> None:
    max_degradation, max_relative = item.max_degradation, item.max_relative_degradation
    if max_degradation is not None and max_relative is not None:
        raise StatsInputError("give max_degradation or max_relative_degradation, not both.")
    for name, tol in (
        ("max_degradation", max_degradation),
        ("max_relative_degradation", max_relative),
    ):
        if tol is not None and (not math.isfinite(tol) or tol < 0.0):
            raise StatsInputError(f"{name} must be a non-negative finite number, got {tol!r}.")


def _check_guardrail(item: GuardrailInput) -> _Checked:
    _check_alpha(item.alpha)
    _check_tolerances(item)
    count_a = _as_array("count", item.count, None)
    k = count_a.size
    _check_control(item.control, k)
    sums_a = _as_array("sums", item.sums, k)
    sums_sq_a = _as_array("sums_sq", item.sums_sq, k)
    previous = _previous(item.sequential_states, k)
    _check_counts(item.metric_type, count_a, sums_a)
    return _guardrail_checked(item, count_a, sums_a, sums_sq_a, previous)


def _guardrail_checked(
    item: GuardrailInput,
    n: FloatArray,
    sums: FloatArray,
    sums_sq: FloatArray,
    previous: list[float],
) -> _Checked:
    return _Checked(
        metric_type=item.metric_type,
        direction=item.direction,
        alpha=item.alpha,
        control=item.control,
        n=n,
        sums=sums,
        sums_sq=sums_sq,
        previous=previous,
        max_degradation=item.max_degradation,
        max_relative_degradation=item.max_relative_degradation,
    )


def _check_many(
    inputs: Sequence[AnalyzeInput | GuardrailInput],
) -> list[_Checked | StatsInputError]:
    """Validate many inputs as :func:`_check_analyze` / :func:`_check_guardrail` do, with the
    same results and messages: the usual shape (plain lists of one length, a control in range)
    is converted in one go per field and its values checked vectorised; anything else, and any
    input those checks flag, goes through the one-input check, which names the problem."""
    out: list[_Checked | StatsInputError | None] = [None] * len(inputs)
    fast: list[int] = []
    arms: list[int] = []
    columns: list[list[Any]] = []
    for i, item in enumerate(inputs):
        try:
            _check_alpha(item.alpha)
            if isinstance(item, GuardrailInput):
                _check_tolerances(item)
        except StatsInputError as exc:
            out[i] = exc
            continue
        fields = _fields(item)
        k = len(fields[0]) if type(fields[0]) in _PLAIN else 0
        states = item.sequential_states
        if (
            k == 0
            or not 0 <= item.control < k
            or (states is not None and len(states) != k)
            or any(type(f) not in _PLAIN or len(f) != k for f in fields)
        ):
            continue  # the one-input check below
        if not columns:
            columns = [[] for _ in fields]
        for column, values in zip(columns, fields, strict=True):
            column += values
        fast.append(i)
        arms.append(k)
    checked: list[FloatArray] = []
    if fast:
        try:
            checked = [np.array(column, dtype=np.float64) for column in columns]
            if any(c.ndim != 1 or c.size != sum(arms) for c in checked):
                checked = []
        except (TypeError, ValueError):
            checked = []
    if checked:
        item_of_arm = np.repeat(np.arange(len(fast)), arms)
        bad = ~np.isfinite(checked[0])
        for values in checked[1:]:
            bad |= ~np.isfinite(values)
        first = inputs[fast[0]]
        if isinstance(first, AnalyzeInput):
            exposures, _, count, sums, _ = checked
            binary = np.asarray([inputs[i].metric_type == "binary" for i in fast], dtype=bool)[
                item_of_arm
            ]
            n = np.where(binary, exposures, count)
        else:
            n, sums, _ = checked
            binary = np.asarray([inputs[i].metric_type == "binary" for i in fast], dtype=bool)[
                item_of_arm
            ]
        with np.errstate(invalid="ignore"):
            bad |= n < 0
            bad |= binary & ((sums < 0) | (sums > n * (1 + 1e-9) + 1e-9))
        flagged = np.bincount(item_of_arm, weights=bad, minlength=len(fast)) > 0
        start = 0
        for i, k, is_flagged in zip(fast, arms, flagged.tolist(), strict=True):
            end = start + k
            if not is_flagged:
                item = inputs[i]
                cut = [c[start:end] for c in checked]
                previous = _previous(item.sequential_states, k)
                if isinstance(item, AnalyzeInput):
                    n_i = cut[0] if item.metric_type == "binary" else cut[2]
                    out[i] = _analyze_checked(item, cut[0], cut[1], n_i, cut[3], cut[4], previous)
                else:
                    out[i] = _guardrail_checked(item, cut[0], cut[1], cut[2], previous)
            start = end
    for i, item in enumerate(inputs):
        if out[i] is None:
            try:
                out[i] = (
                    _check_analyze(item)
                    if isinstance(item, AnalyzeInput)
                    else _check_guardrail(item)
                )
            except StatsInputError as exc:
                out[i] = exc
    return _filled(out)


_PLAIN = (list, tuple)


def _fields(item: AnalyzeInput | GuardrailInput) -> tuple[Any, ...]:
    """The per-arm fields of an input, in the order the one-input check reads them."""
    if isinstance(item, AnalyzeInput):
        return (item.exposures, item.expected_exposures, item.count, item.sums, item.sums_sq)
    return (item.count, item.sums, item.sums_sq)


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
    item = AnalyzeInput(
        metric_type=metric_type,
        direction=direction,
        alpha=alpha,
        control=control,
        exposures=exposures,
        expected_exposures=expected_exposures,
        count=count,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=sequential_states,
    )
    (report,) = analyze_many([item], rng=rng, draws=draws, integrate=integrate)
    if isinstance(report, StatsInputError):
        raise report
    return report


def analyze_many(
    inputs: Sequence[AnalyzeInput],
    *,
    rng: np.random.Generator,
    draws: int = DEFAULT_DRAWS,
    integrate: bool = False,
) -> list[MetricReport | StatsInputError]:
    """:func:`analyze` for many experiments at once, vectorised across all their arms.

    Each result is the same as :func:`analyze` gives for that input alone, called in the order
    of the inputs with the same ``rng`` (only the Monte Carlo draws use it: every draw, or with
    ``integrate`` only the fallbacks). An input that :func:`analyze` would reject gets its
    StatsInputError in its place; the others are not affected.
    """
    out: list[MetricReport | StatsInputError | None] = [None] * len(inputs)
    checked: list[tuple[int, _Checked]] = []
    for i, result in enumerate(_check_many(inputs)):
        if isinstance(result, StatsInputError):
            out[i] = result
        else:
            checked.append((i, result))
    bests = _best_arms([c for _, c in checked], rng=rng, draws=draws, integrate=integrate)
    for metric_type in ("binary", "continuous"):
        members = [j for j, (_, c) in enumerate(checked) if c.metric_type == metric_type]
        if members:
            reports = _analyze_group(
                metric_type, [checked[j][1] for j in members], [bests[j] for j in members]
            )
            for j, report in zip(members, reports, strict=True):
                out[checked[j][0]] = report
    return _filled(out)


def _filled(results: list[_T | None]) -> list[_T]:
    """Every input's result, once each has one."""
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    return done


def _best_arms(
    items: list[_Checked], *, rng: np.random.Generator, draws: int, integrate: bool
) -> list[BestArm]:
    """P(best) of each item: integrated (batched by metric type, direction and number of arms)
    where it applies, else drawn, in item order; skipped where the item says so."""
    found: list[BestArm | None] = [
        None if c.p_best else BestArm(p_best=None, expected_loss=None, seed=0, draws=0)
        for c in items
    ]
    if integrate:
        groups: dict[tuple[str, str, int], list[int]] = {}
        for j, c in enumerate(items):
            if c.p_best:
                groups.setdefault((c.metric_type, c.direction, c.n.size), []).append(j)
        for (metric_type, direction, _), members in groups.items():
            results = best_arm_integrated_many(
                metric_type,  # type: ignore[arg-type]
                direction,  # type: ignore[arg-type]
                np.stack([items[j].n for j in members]),
                np.stack([items[j].sums for j in members]),
                np.stack([items[j].sums_sq for j in members]),
            )
            for j, result in zip(members, results, strict=True):
                found[j] = result
    out: list[BestArm] = []
    for c, best in zip(items, found, strict=True):
        if best is None:
            best = best_arm(
                c.metric_type, c.direction, c.n, c.sums, c.sums_sq, rng=rng, draws=draws
            )
        out.append(best)
    return out


@dataclass(frozen=True, slots=True)
class _Flat:
    """The arms of many experiments one after the other, with their comparisons.

    Attributes:
        arms: number of arms of each experiment.
        starts: index of each experiment's first arm.
        n, sums, sums_sq: per arm, the totals.
        rounded: per arm, n rounded to an integer (the counts the tests use).
        mean, std: per arm, NaN where undefined (as :func:`_arm_mean_std` defines them).
        arm, control, item: per comparison (each non-control arm, in order), the arm's and its
            control's flat index and the experiment's index.
    """

    arms: list[int]
    starts: list[int]
    n: FloatArray
    sums: FloatArray
    sums_sq: FloatArray
    rounded: FloatArray
    mean: FloatArray
    std: FloatArray
    arm: npt.NDArray[np.intp]
    control: npt.NDArray[np.intp]
    item: npt.NDArray[np.intp]


def _flatten(metric_type: MetricType, items: list[_Checked]) -> _Flat:
    arms = [c.n.size for c in items]
    starts = np.concatenate([[0], np.cumsum(arms[:-1], dtype=np.intp)]).astype(np.intp)
    n = np.concatenate([c.n for c in items])
    sums = np.concatenate([c.sums for c in items])
    sums_sq = np.concatenate([c.sums_sq for c in items])
    mean, std = _arm_mean_std(metric_type, n, sums, sums_sq)
    controls = starts + np.asarray([c.control for c in items], dtype=np.intp)
    is_control = np.zeros(n.size, dtype=bool)
    is_control[controls] = True
    arm = np.flatnonzero(~is_control)
    item = np.repeat(np.arange(len(items), dtype=np.intp), np.asarray(arms) - 1)
    return _Flat(
        arms=arms,
        starts=starts.tolist(),
        n=n,
        sums=sums,
        sums_sq=sums_sq,
        rounded=np.round(n),
        mean=mean,
        std=std,
        arm=arm,
        control=controls[item],
        item=item,
    )


def _arm_mean_std(
    metric_type: MetricType, n: FloatArray, sums: FloatArray, sums_sq: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-arm mean and std, NaN where undefined: the mean sum / n when n > 0 (clipped to
    [0, 1] for a binary metric); the std √(mean(1 − mean)) for binary, the sample std (ddof 1,
    a negative variance from cancellation read as 0) for continuous when n ≥ 2."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = np.where(n > 0, sums / n, np.nan)
        if metric_type == "binary":
            mean = np.where(n > 0, clip01(mean), np.nan)
            std = np.sqrt(mean * (1.0 - mean))
        else:
            var = (sums_sq - sums * mean) / (n - 1.0)
            std = np.where(n >= 2, np.sqrt(np.where(var > 0.0, var, 0.0)), np.nan)
    return mean, std


def _optional(values: FloatArray) -> list[float | None]:
    """The values as floats, None where NaN (undefined)."""
    return [None if v != v else v for v in values.tolist()]


def _analyze_group(
    metric_type: MetricType, items: list[_Checked], bests: list[BestArm]
) -> list[MetricReport]:
    """analyze_many for items of one metric type."""
    f = _flatten(metric_type, items)
    alpha = np.asarray([c.alpha for c in items], dtype=np.float64)
    z_item = z_values(alpha.tolist())
    a, c = f.arm, f.control
    arm_alpha = np.repeat(alpha, f.arms)

    # per arm: interval of the mean
    if metric_type == "binary":
        ci_lo, ci_hi = wilson_intervals(f.sums, f.rounded, np.repeat(z_item, f.arms))
    else:
        half = t_half_widths(f.std, f.rounded, arm_alpha)
        with np.errstate(invalid="ignore"):
            ci_lo, ci_hi = f.mean - half, f.mean + half
    exposures = np.concatenate([i.exposures for i in items if i.exposures is not None])
    expected = np.concatenate(
        [i.expected_exposures for i in items if i.expected_exposures is not None]
    )

    # per comparison: fixed-horizon test and sequential look
    with np.errstate(invalid="ignore", over="ignore"):
        diff = f.mean[a] - f.mean[c]
    if metric_type == "binary":
        lo, hi, p_value = two_proportion_tests(
            f.sums[a], f.rounded[a], f.sums[c], f.rounded[c], z_item[f.item]
        )
    else:
        lo, hi, p_value = welch_tests(
            f.mean[a],
            f.std[a],
            f.rounded[a],
            f.mean[c],
            f.std[c],
            f.rounded[c],
            alpha[f.item],
        )
    terms = sequential.difference_terms(
        metric_type, f.n[a], f.sums[a], f.sums_sq[a], f.n[c], f.sums[c], f.sums_sq[c]
    )
    variance = terms.variance
    previous = np.asarray(
        [p for item in items for j, p in enumerate(item.previous) if j != item.control],
        dtype=np.float64,
    )
    seq_p = sequential.update_flat(
        previous,
        estimates=diff,
        variances=np.where(np.isfinite(variance), variance, np.nan),
        n_arm=f.rounded[a],
        n_control=f.rounded[c],
    ).tolist()

    mean_l, std_l = _optional(f.mean), _optional(f.std)
    n_l, sums_l = f.rounded.tolist(), f.sums.tolist()
    exp_l, expected_l = exposures.tolist(), expected.tolist()
    ci_l = list(zip(ci_lo.tolist(), ci_hi.tolist(), strict=True))
    diff_l, p_l = _optional(diff), _optional(p_value)
    diff_ci_l = list(zip(lo.tolist(), hi.tolist(), strict=True))
    srm = srm_many(exposures, expected, f.arms)

    reports: list[MetricReport] = []
    j = 0  # the current experiment's first comparison
    for i, (item, best) in enumerate(zip(items, bests, strict=True)):
        start, k, control = f.starts[i], f.arms[i], item.control
        arms: list[ArmSummary] = []
        for r in range(k):
            g = start + r
            arms.append(
                ArmSummary(
                    arm=r,
                    exposures=round(exp_l[g]),
                    expected_exposures=expected_l[g],
                    count=round(n_l[g]),
                    sum=sums_l[g],
                    mean=_finite(mean_l[g]),
                    std=_finite(std_l[g]),
                    ci=_finite_ci(*ci_l[g]),
                    p_best=None if best.p_best is None else best.p_best[r],
                    expected_loss=_finite(best.expected_loss[r] if best.expected_loss else None),
                )
            )
        adjusted = holm(p_l[j : j + k - 1])
        control_mean = mean_l[start + control]
        comparisons: list[Comparison] = []
        new_states: list[SequentialState | None] = [None] * k
        others = [r for r in range(k) if r != control]
        for m, r in enumerate(others):
            p_seq = seq_p[j + m]
            state = SequentialState(p_seq)
            new_states[r] = state
            comparisons.append(
                Comparison(
                    arm=r,
                    control=control,
                    diff=_finite(diff_l[j + m]),
                    diff_ci=_finite_ci(*diff_ci_l[j + m]),
                    lift=_finite(lift(diff_l[j + m], control_mean)),
                    p_value=_finite(p_l[j + m]),
                    p_value_adjusted=_finite(adjusted[m]),
                    sequential_p_value=p_seq,
                    significant=p_seq < item.alpha,
                    state=state,
                )
            )
        j += k - 1
        reports.append(
            MetricReport(
                alpha=item.alpha,
                arms=tuple(arms),
                comparisons=tuple(comparisons),
                srm=srm[i],
                sequential_states=tuple(new_states),
                seed=best.seed,
                draws=best.draws,
            )
        )
    return reports


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
    item = GuardrailInput(
        metric_type=metric_type,
        direction=direction,
        alpha=alpha,
        control=control,
        count=count,
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=sequential_states,
        max_degradation=max_degradation,
        max_relative_degradation=max_relative_degradation,
    )
    (checks,) = guardrail_many([item])
    if isinstance(checks, StatsInputError):
        raise checks
    return checks


def guardrail_many(
    inputs: Sequence[GuardrailInput],
) -> list[tuple[GuardrailCheck, ...] | StatsInputError]:
    """:func:`guardrail` for many experiments (or metrics) at once, vectorised across all
    their arms: each result is the same as :func:`guardrail` gives for that input alone, or the
    StatsInputError it would raise."""
    out: list[tuple[GuardrailCheck, ...] | StatsInputError | None] = [None] * len(inputs)
    checked: list[tuple[int, _Checked]] = []
    for i, result in enumerate(_check_many(inputs)):
        if isinstance(result, StatsInputError):
            out[i] = result
        else:
            checked.append((i, result))
    for metric_type in ("binary", "continuous"):
        members = [(i, c) for i, c in checked if c.metric_type == metric_type]
        if members:
            groups = _guardrail_group(metric_type, [c for _, c in members])
            for (i, _), checks in zip(members, groups, strict=True):
                out[i] = checks
    return _filled(out)


def _guardrail_group(
    metric_type: MetricType, items: list[_Checked]
) -> list[tuple[GuardrailCheck, ...]]:
    """guardrail_many for items of one metric type."""
    f = _flatten(metric_type, items)
    a, c = f.arm, f.control
    per = f.item
    terms = sequential.degradation_terms(
        metric_type,
        [items[i].direction for i in per.tolist()],
        f.n[a],
        f.sums[a],
        f.sums_sq[a],
        f.n[c],
        f.sums[c],
        f.sums_sq[c],
        max_degradation=np.asarray(
            [np.nan if it.max_degradation is None else it.max_degradation for it in items]
        )[per],
        max_relative_degradation=np.asarray(
            [
                np.nan if it.max_relative_degradation is None else it.max_relative_degradation
                for it in items
            ]
        )[per],
    )
    finite = np.isfinite
    harm = np.where(finite(terms.estimate), terms.estimate, np.nan)
    v_arm = np.where(finite(terms.var_arm), terms.var_arm, np.nan)
    v_control = np.where(finite(terms.var_control), terms.var_control, np.nan)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        var = v_arm + v_control
        z = harm / np.sqrt(var)
        if metric_type == "continuous":
            df = welch_satterthwaite_dfs(v_arm, f.rounded[a], v_control, f.rounded[c])
            tail = special.stdtr(df, -z)
        else:
            tail = special.ndtr(-z)
        p_value = np.where(var > 0.0, clip01(tail), np.where(harm > 0.0, 0.0, 1.0))
        p_value = np.where(np.isnan(harm) | np.isnan(v_arm) | np.isnan(v_control), np.nan, p_value)
        diff = f.mean[a] - f.mean[c]
    previous = np.asarray(
        [p for item in items for j, p in enumerate(item.previous) if j != item.control],
        dtype=np.float64,
    )
    seq_p = sequential.update_flat(
        previous,
        estimates=harm,
        variances=var,
        n_arm=f.rounded[a],
        n_control=f.rounded[c],
        one_sided=True,
    ).tolist()
    diff_l, p_l = _optional(diff), _optional(p_value)
    out: list[tuple[GuardrailCheck, ...]] = []
    j = 0
    for item, k in zip(items, f.arms, strict=True):
        control = item.control
        checks: list[GuardrailCheck] = []
        for m, r in enumerate(r for r in range(k) if r != control):
            p_seq = seq_p[j + m]
            checks.append(
                GuardrailCheck(
                    arm=r,
                    control=control,
                    diff=_finite(diff_l[j + m]),
                    p_value=_finite(p_l[j + m]),
                    sequential_p_value=p_seq,
                    breached=p_seq < item.alpha,
                    state=SequentialState(p_seq),
                )
            )
        j += k - 1
        out.append(tuple(checks))
    return out
