# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
# ruff: noqa: RUF002
"""Always-valid p-values by the mixture sequential probability ratio test (mSPRT).

Johari, Pekelis & Walsh (2017), "Always valid inference: continuous monitoring of A/B tests"
(the "Peeking at A/B tests" paper). Let θ̂ be an estimate of the effect θ with variance V
(known, or estimated consistently). The likelihood ratio of θ against the null value θ₀,
mixed over a normal prior θ ~ N(θ₀, τ²), is

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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from croupier.stats.sufficient import FloatArray

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
