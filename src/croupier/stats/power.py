# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Sample size for a two-sample comparison (``POST /v1/stats/sample-size``).

Standard normal-approximation formulas, two-sided α, no correction across arms:

- binary: p₁ = baseline, p₂ = baseline + δ, p̄ = (p₁ + p₂)/2,
  n = (z₁₋α/₂·√(2p̄(1 − p̄)) + z₁₋β·√(p₁(1 − p₁) + p₂(1 − p₂)))² / δ²
  (pooled variance under H0, unpooled under H1);
- continuous: n = 2(z₁₋α/₂ + z₁₋β)²·std² / δ²;

with δ = |mde| or |baseline·mde_relative|, ``per_arm`` = ceil(n) and ``total`` = per_arm·arms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import special


class SampleSizeError(ValueError):
    """The sample-size request is invalid; the message says which input and why."""


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Required sample size.

    Attributes:
        per_arm: observations needed in each arm.
        total: per_arm · arms.
    """

    per_arm: int
    total: int


def _finite(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SampleSizeError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def sample_size(
    *,
    type: Literal["binary", "continuous"],
    baseline: float,
    mde: float | None = None,
    mde_relative: float | None = None,
    std: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    arms: int = 2,
) -> SampleSize:
    """Per-arm and total sample size to detect the effect; raises SampleSizeError if invalid."""
    if type not in ("binary", "continuous"):
        raise SampleSizeError(f"type must be 'binary' or 'continuous', got {type!r}.")
    base = _finite("baseline", baseline)
    if base is None:
        raise SampleSizeError("baseline is required.")
    abs_mde = _finite("mde", mde)
    rel_mde = _finite("mde_relative", mde_relative)
    sd = _finite("std", std)
    a = _finite("alpha", alpha)
    pw = _finite("power", power)
    if (abs_mde is None) == (rel_mde is None):
        raise SampleSizeError("Give exactly one of mde (absolute) or mde_relative.")
    if a is None or not 0.0 < a < 1.0:
        raise SampleSizeError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    if pw is None or not 0.0 < pw < 1.0:
        raise SampleSizeError(f"power must be strictly between 0 and 1, got {power!r}.")
    if isinstance(arms, bool) or not isinstance(arms, int) or not 2 <= arms <= 32:
        raise SampleSizeError(f"arms must be an integer from 2 to 32, got {arms!r}.")
    delta = abs(abs_mde) if abs_mde is not None else abs(base * (rel_mde or 0.0))
    if delta == 0.0:
        raise SampleSizeError("The minimum detectable effect must be non-zero.")
    # the standard normal's upper quantiles, isf(q) = −ndtri(q) (scipy.special keeps the
    # server processes clear of scipy.stats, whose import alone costs ~50 MB per process)
    z_alpha = -float(special.ndtri(a / 2.0))
    z_beta = -float(special.ndtri(1.0 - pw))
    if type == "binary":
        if not 0.0 < base < 1.0:
            raise SampleSizeError(
                f"baseline must be a rate strictly between 0 and 1 for a binary metric, "
                f"got {baseline!r}."
            )
        p1, p2 = base, base + delta
        if p2 >= 1.0:
            raise SampleSizeError(
                f"baseline + effect = {p2:g} must stay below 1 for a binary metric; "
                f"use a smaller effect."
            )
        p_bar = (p1 + p2) / 2.0
        root = z_alpha * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_beta * math.sqrt(
            p1 * (1.0 - p1) + p2 * (1.0 - p2)
        )
        n = (root / delta) * (root / delta)
    else:
        if sd is None or sd <= 0.0:
            raise SampleSizeError("std must be given and positive for a continuous metric.")
        n = 2.0 * (z_alpha + z_beta) ** 2 * (sd / delta) * (sd / delta)
    if not math.isfinite(n) or n > 1e15:
        raise SampleSizeError("The effect is too small relative to the noise to plan for.")
    per_arm = max(1, math.ceil(round(n, 9)))
    return SampleSize(per_arm=per_arm, total=per_arm * arms)
