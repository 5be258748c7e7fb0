# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Always-valid p-values by the mixture sequential probability ratio test (mSPRT).

Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B tests: why it matters, and what to do
about it" (KDD), building on Johari, Pekelis & Walsh, "Always valid inference: bringing
sequential analysis to A/B testing" (arXiv:1512.04922).

Let θ̂ be an estimate of the effect θ with variance V (known, or estimated consistently).
The likelihood ratio of θ against the null value θ₀, mixed over a normal prior
θ ~ N(θ₀, τ²), is

    Λ = sqrt(V / (V + τ²)) · exp( τ² (θ̂ − θ₀)² / (2 V (V + τ²)) ).

Under H0, Λ is a non-negative martingale in the amount of information, so by Ville's inequality
P(sup Λ ≥ 1/α) ≤ α and ``p = min over looks of 1/Λ`` is an always-valid p-value: rejecting as
soon as p < α keeps the false-positive rate at or below α however often one looks.

Mixing variance. We set τ = φ·σ with σ the per-observation standard deviation and φ = 0.1
(:data:`DEFAULT_MIXING_EFFECT`), i.e. the prior on the standardized effect (Cohen's d) is N(0, φ²).
With r = τ²/V this is r = φ²·n_arm·n_control/(n_arm + n_control), so Λ depends only on the
z-statistic z = (θ̂ − θ₀)/√V and the sample sizes:

    log Λ = −½·log(1 + r) + z²·r / (2(1 + r)).

The boundary in z is lowest (≈ 3.0 at α = 0.05) around r ≈ 5–10, i.e. about 1,000–2,000
observations per arm, which is where a standardized effect of 0.1 becomes detectable at
80 % power with a fixed-horizon test; Johari et al. recommend choosing τ so that the mixture
matches the effect sizes one expects, and 0.1 σ is a typical "small" effect.

Only the running minimum of the p-value needs to be stored between looks
(:class:`SequentialState`); the test statistic itself is recomputed from cumulative totals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from croupier.stats.sufficient import FloatArray, safe_divide, sample_variances

DEFAULT_MIXING_EFFECT = 0.1
"""φ: mixing standard deviation τ in units of the per-observation standard deviation."""

MIN_COUNT_PER_ARM = 30
"""Looks where either arm has fewer observations than this are skipped (p stays where it was);
the normal approximation and the plug-in variance are not trusted below it."""


@dataclass(frozen=True, slots=True)
class SequentialState:
    """What the caller stores between looks for one (arm, metric) sequential test.

    Attributes:
        p_value: the always-valid p-value so far: 1.0 before any evidence, never increasing.
    """

    p_value: float = 1.0


INITIAL_STATE = SequentialState()


def mixture_log_lr(z: npt.ArrayLike, r: npt.ArrayLike, *, one_sided: bool = False) -> FloatArray:
    """log Λ of the normal-mixture SPRT from the z-statistic and r = τ²/V (vectorised).

    Two-sided: mixing N(0, τ²). One-sided (alternative θ > θ₀): mixing over the half-normal
    on θ > θ₀, which adds log(2·Φ(z·√(r/(1+r)))); under any θ ≤ θ₀ this is a supermartingale,
    so the test is valid for the composite null.
    """
    z_a = np.asarray(z, dtype=np.float64)
    r_a = np.asarray(r, dtype=np.float64)
    shrink = r_a / (1.0 + r_a)
    log_lr = -0.5 * np.log1p(r_a) + 0.5 * z_a * z_a * shrink
    if one_sided:
        log_lr = log_lr + math.log(2.0) + special.log_ndtr(z_a * np.sqrt(shrink))
    return np.asarray(log_lr, dtype=np.float64)


def mixture_p_values(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    n_arm: npt.ArrayLike,
    n_control: npt.ArrayLike,
    *,
    null_value: float = 0.0,
    one_sided: bool = False,
    mixing_effect: float = DEFAULT_MIXING_EFFECT,
    min_count: int = MIN_COUNT_PER_ARM,
) -> FloatArray:
    """One look's p-value 1/Λ, clipped to [0, 1] (vectorised; not yet the running minimum).

    ``estimate`` has variance ``variance``; the result is 1.0 wherever the variance is not
    positive and finite or either arm has fewer than ``min_count`` observations.
    """
    est = np.asarray(estimate, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    na = np.asarray(n_arm, dtype=np.float64)
    nc = np.asarray(n_control, dtype=np.float64)
    ok = (var > 0.0) & np.isfinite(var) & np.isfinite(est) & (na >= min_count) & (nc >= min_count)
    safe_var = np.where(ok, var, 1.0)
    with np.errstate(over="ignore"):  # an overwhelming z is clipped, not an error
        z = np.clip(np.where(ok, est - null_value, 0.0) / np.sqrt(safe_var), -1e100, 1e100)
    n_eff = np.where(ok, na * nc / np.where(ok, na + nc, 1.0), 0.0)
    r = mixing_effect * mixing_effect * n_eff
    log_lr = mixture_log_lr(z, r, one_sided=one_sided)
    p = np.exp(-np.maximum(log_lr, 0.0))
    return np.where(ok, p, 1.0)


def update(
    state: SequentialState | None,
    *,
    estimate: float | None,
    variance: float | None,
    n_arm: int,
    n_control: int,
    null_value: float = 0.0,
    one_sided: bool = False,
    mixing_effect: float = DEFAULT_MIXING_EFFECT,
    min_count: int = MIN_COUNT_PER_ARM,
) -> tuple[SequentialState, float]:
    """Fold one look (cumulative totals so far) into the state; return (new state, p-value).

    A None state is the start of the experiment (p = 1.0). An undefined estimate or variance
    leaves the p-value unchanged. The returned p-value never exceeds the previous one.
    """
    stored = (state or INITIAL_STATE).p_value
    previous = min(1.0, max(0.0, stored)) if math.isfinite(stored) else 1.0
    if estimate is None or variance is None:
        return SequentialState(previous), previous
    p_look = float(
        mixture_p_values(
            estimate,
            variance,
            n_arm,
            n_control,
            null_value=null_value,
            one_sided=one_sided,
            mixing_effect=mixing_effect,
            min_count=min_count,
        )
    )
    p = min(previous, p_look) if math.isfinite(p_look) else previous
    return SequentialState(p), p


def update_flat(
    previous: FloatArray,
    *,
    estimates: FloatArray,
    variances: FloatArray,
    n_arm: FloatArray,
    n_control: FloatArray,
    one_sided: bool = False,
) -> FloatArray:
    """:func:`update` for many comparisons at once (vectorised; the same results).

    ``previous`` are the stored p-values as :func:`update` reads them (clipped to [0, 1], 1.0
    at the start or in place of a non-finite value); a comparison whose estimate or variance
    is not finite (undefined) keeps its previous p-value.
    """
    defined = np.isfinite(estimates) & np.isfinite(variances)
    out = previous.copy()
    if np.any(defined):
        prev = previous[defined]
        look = mixture_p_values(
            estimates[defined],
            variances[defined],
            n_arm[defined],
            n_control[defined],
            one_sided=one_sided,
        )
        out[defined] = np.where(np.isfinite(look) & (look < prev), look, prev)
    return out


@dataclass(frozen=True, slots=True)
class ComparisonTerms:
    """Estimate and variance components of one arm-vs-control contrast (vectorised).

    Attributes:
        estimate: the contrast's point estimate; NaN where undefined.
        var_arm: the arm's contribution to the estimate's variance; NaN where undefined.
        var_control: the control's contribution (already multiplied by the contrast's squared
            coefficient); NaN where undefined.
    """

    estimate: FloatArray
    var_arm: FloatArray
    var_control: FloatArray

    @property
    def variance(self) -> FloatArray:
        """Variance of the estimate: var_arm + var_control."""
        return np.asarray(self.var_arm + self.var_control, dtype=np.float64)


def _mean_var(
    n: npt.ArrayLike, s: npt.ArrayLike, ss: npt.ArrayLike, *, binary: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(n, mean, variance of one observation) per element; NaN where undefined."""
    n_a = np.asarray(n, dtype=np.float64)
    s_a = np.asarray(s, dtype=np.float64)
    mean = safe_divide(s_a, n_a)
    if binary:
        mean = np.clip(mean, 0.0, 1.0)
        return n_a, mean, mean * (1.0 - mean)
    return n_a, mean, sample_variances(n_a, s_a, ss)


def difference_terms(
    metric_type: str,
    n_arm: npt.ArrayLike,
    sum_arm: npt.ArrayLike,
    sum_sq_arm: npt.ArrayLike,
    n_control: npt.ArrayLike,
    sum_control: npt.ArrayLike,
    sum_sq_control: npt.ArrayLike,
) -> ComparisonTerms:
    """Terms of the two-sided primary test of arm − control from running totals.

    Binary metrics use the pooled proportion for the variance (the null is "no difference",
    and the pooled estimate is the better-behaved one with few conversions); continuous
    metrics use the unpooled sample variances (Welch).
    """
    binary = metric_type == "binary"
    na, ma, va = _mean_var(n_arm, sum_arm, sum_sq_arm, binary=binary)
    nc, mc, vc = _mean_var(n_control, sum_control, sum_sq_control, binary=binary)
    if binary:
        pooled = np.clip(
            safe_divide(np.add(sum_arm, sum_control, dtype=np.float64), na + nc), 0.0, 1.0
        )
        va = vc = pooled * (1.0 - pooled)
    return ComparisonTerms(ma - mc, safe_divide(va, na), safe_divide(vc, nc))


def degradation_terms(
    metric_type: str,
    direction: str | Sequence[str],
    n_arm: npt.ArrayLike,
    sum_arm: npt.ArrayLike,
    sum_sq_arm: npt.ArrayLike,
    n_control: npt.ArrayLike,
    sum_control: npt.ArrayLike,
    sum_sq_control: npt.ArrayLike,
    *,
    max_degradation: npt.ArrayLike | None = None,
    max_relative_degradation: npt.ArrayLike | None = None,
) -> ComparisonTerms:
    """Terms of the one-sided guardrail test: the excess harm h beyond the tolerance.

    Worse means lower when maximizing and higher when minimizing. Absolute tolerance m:
    h = ±(control − arm) − m. Relative tolerance r (taken relative to |control mean|):
    h = (1 − r)·control − arm when maximizing, arm − (1 + r)·control when minimizing; the
    control's variance is scaled by the squared coefficient. A guardrail is breached when
    H0: h ≤ 0 is rejected. Binary variances use the Agresti–Caffo adjusted proportion (one
    success and one failure added) so all-0 or all-1 arms still carry a positive variance.

    Vectorised over comparisons: ``direction`` may also give one direction per comparison and
    the tolerances one value per comparison (NaN: no such tolerance; a relative tolerance
    wins over an absolute one, as only one of them is ever set).
    """
    binary = metric_type == "binary"
    na, ma, va = _mean_var(n_arm, sum_arm, sum_sq_arm, binary=binary)
    nc, mc, vc = _mean_var(n_control, sum_control, sum_sq_control, binary=binary)
    if binary:
        pa = (np.asarray(sum_arm, dtype=np.float64) + 1.0) / (na + 2.0)
        pc = (np.asarray(sum_control, dtype=np.float64) + 1.0) / (nc + 2.0)
        var_a = np.where(na > 0, pa * (1.0 - pa) / (na + 2.0), np.nan)
        var_c = np.where(nc > 0, pc * (1.0 - pc) / (nc + 2.0), np.nan)
    else:
        var_a, var_c = safe_divide(va, na), safe_divide(vc, nc)
    if isinstance(direction, str):
        sign: float | FloatArray = 1.0 if direction == "maximize" else -1.0
    else:
        sign = np.where(np.asarray(direction) == "maximize", 1.0, -1.0)
    relative = np.asarray(
        np.nan if max_relative_degradation is None else max_relative_degradation,
        dtype=np.float64,
    )
    absolute = np.asarray(0.0 if max_degradation is None else max_degradation, dtype=np.float64)
    is_relative = ~np.isnan(relative)
    if not np.any(is_relative):
        coef = np.ones_like(mc)
        harm = sign * (mc - ma) - np.where(np.isnan(absolute), 0.0, absolute)
        return ComparisonTerms(harm, var_a, coef * coef * var_c)
    r = relative * np.where(mc < 0.0, -1.0, 1.0)
    coef = np.where(is_relative, 1.0 - sign * r, 1.0)
    harm = np.where(
        is_relative,
        sign * (coef * mc - ma),
        sign * (mc - ma) - np.where(np.isnan(absolute), 0.0, absolute),
    )
    return ComparisonTerms(harm, var_a, coef * coef * var_c)
