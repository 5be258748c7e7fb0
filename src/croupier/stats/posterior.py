# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Posterior of each arm's mean, P(best) and expected loss by seeded Monte Carlo.

Binary metric: Beta(1 + sum, 1 + n − sum) (a uniform prior). Continuous metric: the normal
approximation Normal(mean, s²/count) with the sample variance s² (ddof 1).

The generator passed in is used only to draw a fresh 63-bit seed; the draws come from a new
generator seeded with it, and the seed is returned so any result can be reproduced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from croupier.stats.sufficient import FloatArray, means, sample_variances

MetricType = Literal["binary", "continuous"]
Direction = Literal["maximize", "minimize"]

DEFAULT_DRAWS = 10_000


@dataclass(frozen=True, slots=True)
class BestArm:
    """Monte Carlo summary of which arm is best.

    Attributes:
        p_best: per arm, the posterior probability that its mean is the best (largest when
            maximizing, smallest when minimizing); sums to 1. None when any arm's posterior is
            undefined (a continuous arm with fewer than two rewards).
        expected_loss: per arm, E[max_j θ_j − θ_i] (maximize) or E[θ_i − min_j θ_j]
            (minimize), in the metric's own units; ≥ 0. None exactly when p_best is None.
        seed: the seed of the generator that produced the draws.
        draws: the number of joint posterior draws.
    """

    p_best: tuple[float, ...] | None
    expected_loss: tuple[float, ...] | None
    seed: int
    draws: int


def draw_seed(rng: np.random.Generator) -> int:
    """A fresh seed from the caller's generator, to be reported with a Monte Carlo result."""
    return int(rng.integers(0, 2**63 - 1))


def posterior_samples(
    metric_type: MetricType,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    *,
    draws: int,
    rng: np.random.Generator,
) -> FloatArray | None:
    """Joint posterior draws of the arm means, shape (draws, arms); None if any is undefined."""
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    if metric_type == "binary":
        successes = np.clip(s, 0.0, n)
        return rng.beta(1.0 + successes, 1.0 + n - successes, size=(draws, n.size))
    if np.any(n < 2):
        return None
    mu = means(n, s)
    scale = np.sqrt(sample_variances(n, s, sums_sq) / n)
    return rng.normal(mu, scale, size=(draws, n.size))


def best_arm_from_samples(
    samples: FloatArray, *, direction: Direction
) -> tuple[FloatArray, FloatArray]:
    """P(best) and expected loss per arm from joint draws of shape (draws, arms).

    Ties within a draw (possible when a posterior is a point mass) share the win equally.
    """
    if direction == "maximize":
        best = samples.max(axis=1, keepdims=True)
        loss = (best - samples).mean(axis=0)
    else:
        best = samples.min(axis=1, keepdims=True)
        loss = (samples - best).mean(axis=0)
    is_best = samples == best
    share = is_best / is_best.sum(axis=1, keepdims=True)
    p_best = share.mean(axis=0)
    return p_best, np.maximum(loss, 0.0)


def best_arm(
    metric_type: MetricType,
    direction: Direction,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    *,
    rng: np.random.Generator,
    draws: int = DEFAULT_DRAWS,
) -> BestArm:
    """P(best) and expected loss for every arm by vectorised Monte Carlo."""
    if draws < 1:
        raise ValueError(f"draws must be a positive number of Monte Carlo draws, got {draws!r}.")
    seed = draw_seed(rng)
    samples = posterior_samples(
        metric_type, count, sums, sums_sq, draws=draws, rng=np.random.default_rng(seed)
    )
    if samples is None:
        return BestArm(p_best=None, expected_loss=None, seed=seed, draws=draws)
    p_best, loss = best_arm_from_samples(samples, direction=direction)
    return BestArm(
        p_best=tuple(float(x) for x in p_best),
        expected_loss=tuple(float(x) for x in loss),
        seed=seed,
        draws=draws,
    )
