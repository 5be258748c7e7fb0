# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Fixed-horizon frequentist statistics: intervals, two-sample tests, Holm adjustment.

Each function mirrors a named reference implementation (the test oracle) on regular input and
returns ``None`` where the quantity is undefined (no data, one observation, zero variance),
so no NaN or infinity ever reaches a caller.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from croupier.stats.sufficient import FloatArray

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class DiffTest:
    """A two-sided comparison of an arm against the control.

    Attributes:
        diff: arm mean − control mean.
        diff_ci: two-sided (1 − α) interval for ``diff``; None when undefined.
        p_value: two-sided p-value for H0: diff = 0; None when undefined.
    """

    diff: float
    diff_ci: Interval | None
    p_value: float | None


@functools.lru_cache(maxsize=64)
def _z(alpha: float) -> float:
    """The two-sided critical value z_{1-α/2} (cached: α takes few values)."""
    return float(-special.ndtri(alpha / 2.0))


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def wilson_interval(successes: float, n: int, *, alpha: float) -> Interval | None:
    """Wilson (1927) score interval for a proportion; None when n is 0.

    Equal to statsmodels ``proportion_confint(successes, n, alpha, method="wilson")``.
    """
    if n <= 0:
        return None
    z = _z(alpha)
    z2 = z * z
    p = _clip01(successes / n)
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return (_clip01(centre - half), _clip01(centre + half))


def t_interval(mean: float, std: float, n: int, *, alpha: float) -> Interval | None:
    """Student t interval mean ± t(1 − α/2, n − 1)·std/√n; None when n < 2."""
    if n < 2:
        return None
    half = float(-special.stdtrit(n - 1, alpha / 2.0)) * std / math.sqrt(n)
    return (mean - half, mean + half)


def two_proportion_test(
    x_arm: float, n_arm: int, x_control: float, n_control: int, *, alpha: float
) -> DiffTest | None:
    """Pooled two-proportion z-test with an unpooled Wald interval for the difference.

    The p-value equals statsmodels ``proportions_ztest([x_arm, x_control], [n_arm, n_control])``.
    Returns None when either arm has no exposures. When both arms are all 0 or all 1 the pooled
    variance is 0, the difference is 0 and the p-value is 1.0 (no evidence of a difference).
    """
    if n_arm <= 0 or n_control <= 0:
        return None
    p_a = _clip01(x_arm / n_arm)
    p_c = _clip01(x_control / n_control)
    diff = p_a - p_c
    pooled = _clip01((x_arm + x_control) / (n_arm + n_control))
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_arm + 1.0 / n_control))
    p_value = _clip01(2.0 * float(special.ndtr(-abs(diff) / se0))) if se0 > 0.0 else 1.0
    se1 = math.sqrt(p_a * (1.0 - p_a) / n_arm + p_c * (1.0 - p_c) / n_control)
    half = _z(alpha) * se1
    return DiffTest(diff=diff, diff_ci=(diff - half, diff + half), p_value=p_value)


def welch_test(
    mean_arm: float,
    std_arm: float,
    n_arm: int,
    mean_control: float,
    std_control: float,
    n_control: int,
    *,
    alpha: float,
) -> DiffTest | None:
    """Welch (1947) unequal-variance t-test with a Welch–Satterthwaite t interval.

    The p-value equals scipy ``ttest_ind_from_stats(..., equal_var=False)`` with the arm first.
    Returns None when either arm has fewer than two observations. With zero variance in both
    arms the interval collapses to the difference and the p-value is 1.0 when the means are
    equal and 0.0 otherwise (scipy's limits).
    """
    if n_arm < 2 or n_control < 2:
        return None
    diff = mean_arm - mean_control
    v_a = std_arm * std_arm / n_arm
    v_c = std_control * std_control / n_control
    var = v_a + v_c
    if var <= 0.0:
        return DiffTest(diff=diff, diff_ci=(diff, diff), p_value=1.0 if diff == 0.0 else 0.0)
    df = welch_satterthwaite_df(v_a, n_arm, v_c, n_control)
    se = math.sqrt(var)
    p_value = _clip01(2.0 * float(special.stdtr(df, -abs(diff) / se)))
    half = float(-special.stdtrit(df, alpha / 2.0)) * se
    return DiffTest(diff=diff, diff_ci=(diff - half, diff + half), p_value=p_value)


def welch_satterthwaite_df(var_a: float, n_a: int, var_c: float, n_c: int) -> float:
    """Degrees of freedom (v_a + v_c)² / (v_a²/(n_a − 1) + v_c²/(n_c − 1)) of a Welch contrast.

    ``var_a`` and ``var_c`` are variances of the two means (not both 0). Computed from the
    shares v/(v_a + v_c), which is the same value but cannot underflow to 0/0.
    """
    total = var_a + var_c
    share_a, share_c = var_a / total, var_c / total
    return 1.0 / (share_a * share_a / max(n_a - 1, 1) + share_c * share_c / max(n_c - 1, 1))


def lift(diff: float | None, control_mean: float | None) -> float | None:
    """Relative difference diff / control mean; None when undefined (no data, a mean of 0)."""
    if diff is None or control_mean is None or control_mean == 0.0:
        return None
    value = diff / control_mean
    return value if math.isfinite(value) else None


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values.

    Equal to statsmodels ``multipletests(p_values, method="holm")[1]``. A None (undefined)
    p-value stays None but still counts in the family size, as if it were 1.0, so that missing
    data never makes the others look more significant.
    """
    m = len(p_values)
    filled = [1.0 if p is None else _clip01(p) for p in p_values]
    order = sorted(range(m), key=lambda i: filled[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * filled[i]))
        adjusted[i] = running
    return [None if p is None else adj for p, adj in zip(p_values, adjusted, strict=True)]


# Vectorised forms of the functions above, for many arms or comparisons at once (one
# experiment's or many experiments'). Each gives the same numbers as its scalar counterpart
# (the same operations in the same order) and NaN where that one returns None.


def clip01(x: FloatArray) -> FloatArray:
    """min(1, max(0, x)) elementwise, as the scalar functions clip (NaN becomes 0)."""
    return np.asarray(np.where(x > 0.0, np.minimum(x, 1.0), 0.0), dtype=np.float64)


def z_values(alpha: Sequence[float]) -> FloatArray:
    """The two-sided critical values z_{1-α/2} of each α."""
    return np.asarray([_z(a) for a in alpha], dtype=np.float64)


def wilson_intervals(
    successes: FloatArray, n: FloatArray, z: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """:func:`wilson_interval` of many proportions (critical values `z`): (lo, hi), NaN where
    n ≤ 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z2 = z * z
        p = clip01(successes / n)
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
        lo, hi = clip01(centre - half), clip01(centre + half)
    undefined = ~(n > 0)
    return np.where(undefined, np.nan, lo), np.where(undefined, np.nan, hi)


def t_half_widths(std: FloatArray, n: FloatArray, alpha: FloatArray) -> FloatArray:
    """Half-widths t(1 − α/2, n − 1)·std/√n of :func:`t_interval`; NaN where n < 2."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        half = -special.stdtrit(n - 1.0, alpha / 2.0) * std / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def two_proportion_tests(
    x_arm: FloatArray,
    n_arm: FloatArray,
    x_control: FloatArray,
    n_control: FloatArray,
    z: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`two_proportion_test` of many comparisons (critical values `z`):
    (diff_ci lo, diff_ci hi, p-value), NaN where either arm has no exposures."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p_a = clip01(x_arm / n_arm)
        p_c = clip01(x_control / n_control)
        diff = p_a - p_c
        pooled = clip01((x_arm + x_control) / (n_arm + n_control))
        se0 = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_arm + 1.0 / n_control))
        p_value = np.where(se0 > 0.0, clip01(2.0 * special.ndtr(-np.abs(diff) / se0)), 1.0)
        se1 = np.sqrt(p_a * (1.0 - p_a) / n_arm + p_c * (1.0 - p_c) / n_control)
        half = z * se1
    undefined = ~((n_arm > 0) & (n_control > 0))
    return (
        np.where(undefined, np.nan, diff - half),
        np.where(undefined, np.nan, diff + half),
        np.where(undefined, np.nan, p_value),
    )


def welch_tests(
    mean_arm: FloatArray,
    std_arm: FloatArray,
    n_arm: FloatArray,
    mean_control: FloatArray,
    std_control: FloatArray,
    n_control: FloatArray,
    alpha: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`welch_test` of many comparisons: (diff_ci lo, diff_ci hi, p-value), NaN where
    either arm has fewer than two observations or a NaN (undefined) mean or std."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = mean_arm - mean_control
        v_a = std_arm * std_arm / n_arm
        v_c = std_control * std_control / n_control
        var = v_a + v_c
        df = welch_satterthwaite_dfs(v_a, n_arm, v_c, n_control)
        se = np.sqrt(var)
        p_value = clip01(2.0 * special.stdtr(df, -np.abs(diff) / se))
        half = -special.stdtrit(df, alpha / 2.0) * se
    degenerate = ~(var > 0.0)
    lo = np.where(degenerate, diff, diff - half)
    hi = np.where(degenerate, diff, diff + half)
    p_value = np.where(degenerate, np.where(diff == 0.0, 1.0, 0.0), p_value)
    undefined = ~(
        (n_arm >= 2)
        & (n_control >= 2)
        & ~np.isnan(mean_arm)
        & ~np.isnan(std_arm)
        & ~np.isnan(mean_control)
        & ~np.isnan(std_control)
    )
    return (
        np.where(undefined, np.nan, lo),
        np.where(undefined, np.nan, hi),
        np.where(undefined, np.nan, p_value),
    )


def welch_satterthwaite_dfs(
    var_a: FloatArray, n_a: FloatArray, var_c: FloatArray, n_c: FloatArray
) -> FloatArray:
    """:func:`welch_satterthwaite_df` of many contrasts."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = var_a + var_c
        share_a, share_c = var_a / total, var_c / total
        return np.asarray(
            1.0
            / (
                share_a * share_a / np.maximum(n_a - 1.0, 1.0)
                + share_c * share_c / np.maximum(n_c - 1.0, 1.0)
            ),
            dtype=np.float64,
        )
