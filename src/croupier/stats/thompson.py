# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Traffic weights for the ``thompson`` policy.

Probability matching (Thompson 1933): each arm's weight is its posterior probability of being
best, optionally replaced by top-two Thompson sampling (Russo 2016), which gives the runner-up
more traffic and so identifies the best arm faster. Two safety rails follow:

1. an additive floor  p = f + (1 − k·f)·w  (k arms, f = ``min_arm_weight``), which keeps every arm
   explored, keeps the sum at 1 and preserves the order of the raw weights (clipping to f and
   renormalising does neither reliably);
2. a cap on the per-cycle change: the new weights move from the previous ones toward the target
   along a straight line, as far as |new − old| ≤ cap allows for every arm. A convex combination
   of two allocations that respect the floor sums to 1 and respects the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from croupier.stats.posterior import (
    DEFAULT_DRAWS,
    Direction,
    MetricType,
    best_arm_from_samples,
    draw_seed,
    posterior_samples,
)
from croupier.stats.sufficient import FloatArray


class AllocationError(ValueError):
    """The allocation settings are inconsistent (for example k·min_arm_weight > 1)."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """New traffic weights for one experiment.

    Attributes:
        weights: per arm, the weights to publish; sum to 1, each ≥ min_arm_weight (when the
            previous weights did), each within max_change of the previous weight.
        target: per arm, the floored weights before the change cap was applied.
        raw: per arm, P(best) (or the top-two probabilities) before the floor; None when the
            posterior is undefined, in which case the target is the equal split.
        seed: the seed of the Monte Carlo draws.
    """

    weights: tuple[float, ...]
    target: tuple[float, ...]
    raw: tuple[float, ...] | None
    seed: int


def apply_floor(raw: npt.ArrayLike, min_arm_weight: float) -> FloatArray:
    """Additive floor p = f + (1 − k·f)·w of non-negative raw weights (renormalised first)."""
    w = np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)
    k = w.size
    if min_arm_weight < 0.0 or k * min_arm_weight > 1.0 + 1e-12:
        raise AllocationError(
            f"min_arm_weight must be between 0 and 1/{k} for {k} arms, got {min_arm_weight!r}."
        )
    total = float(w.sum())
    w = w / total if total > 0.0 else np.full(k, 1.0 / k)
    return np.asarray(min_arm_weight + (1.0 - k * min_arm_weight) * w, dtype=np.float64)


def cap_change(target: npt.ArrayLike, previous: npt.ArrayLike, max_change: float) -> FloatArray:
    """Move from ``previous`` toward ``target`` no further than ``max_change`` in any arm."""
    new = np.asarray(target, dtype=np.float64)
    old = np.asarray(previous, dtype=np.float64)
    if max_change < 0.0:
        raise AllocationError(f"max_change must be non-negative, got {max_change!r}.")
    if old.shape != new.shape:
        raise AllocationError("previous weights must have one entry per arm.")
    step = new - old
    largest = float(np.max(np.abs(step))) if step.size else 0.0
    if largest <= max_change:
        return new
    # Shrink slightly below the cap so rounding never lets one arm exceed it.
    t = max_change / largest * (1.0 - 1e-12)
    return np.asarray(old + t * step, dtype=np.float64)


def top_two_probabilities(
    samples: FloatArray, *, direction: Direction, beta: float = 0.5
) -> FloatArray:
    """Selection probabilities of top-two Thompson sampling (Russo 2016) from joint draws.

    TTTS plays the posterior sample's best arm I with probability β; otherwise it resamples
    until a different arm J is best and plays J. So arm i is played with probability
    β·p_i + (1 − β)·Σ_{j≠i} p_j·P(best = i | best ≠ j). The conditional is estimated from the
    draws where j is not best; when there are none (p_j = 1 in the sample), the runner-up
    among the other arms in the same draws stands in for it.
    """
    if not 0.0 <= beta <= 1.0:
        raise AllocationError(f"top-two beta must be between 0 and 1, got {beta!r}.")
    oriented = samples if direction == "maximize" else -samples
    n_draws, k = oriented.shape
    if k == 1:
        return np.ones(1)
    leader = np.argmax(oriented, axis=1)
    p_best = np.bincount(leader, minlength=k) / n_draws
    challenger = np.zeros(k)
    for j in range(k):
        if p_best[j] == 0.0:
            continue
        not_j = leader != j
        if np.any(not_j):
            cond = np.bincount(leader[not_j], minlength=k) / np.count_nonzero(not_j)
        else:
            others = np.delete(oriented, j, axis=1)
            runner = np.argmax(others, axis=1)
            runner = runner + (runner >= j)
            cond = np.bincount(runner, minlength=k) / n_draws
        challenger += p_best[j] * cond
    return np.asarray(beta * p_best + (1.0 - beta) * challenger, dtype=np.float64)


def thompson_allocation(
    *,
    metric_type: MetricType,
    direction: Direction,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    min_arm_weight: float,
    rng: np.random.Generator,
    previous: npt.ArrayLike | None = None,
    max_change: float | None = None,
    top_two: bool = False,
    top_two_beta: float = 0.5,
    draws: int = DEFAULT_DRAWS,
) -> Allocation:
    """Thompson-sampling weights (P(best), or top-two) with the additive floor and change cap.

    ``previous`` (the weights in force, one per arm passed in) is renormalised to sum to 1, so
    an optimizer that dropped a rolled-back arm can pass the survivors' old weights as they are.
    """
    if draws < 1:
        raise AllocationError(f"draws must be positive, got {draws!r}.")
    seed = draw_seed(rng)
    n_arms = np.asarray(count).size
    samples = posterior_samples(
        metric_type, count, sums, sums_sq, draws=draws, rng=np.random.default_rng(seed)
    )
    raw: FloatArray | None
    if samples is None:
        raw = None
    elif top_two:
        raw = top_two_probabilities(samples, direction=direction, beta=top_two_beta)
    else:
        raw = best_arm_from_samples(samples, direction=direction)[0]
    target = apply_floor(raw if raw is not None else np.ones(n_arms), min_arm_weight)
    weights = target
    if previous is not None and max_change is not None:
        old = np.clip(np.asarray(previous, dtype=np.float64), 0.0, None)
        old_total = float(old.sum())
        if old.shape == target.shape and old_total > 0.0:
            old = old / old_total
        weights = cap_change(target, old, max_change)
    return Allocation(
        weights=tuple(float(x) for x in weights),
        target=tuple(float(x) for x in target),
        raw=None if raw is None else tuple(float(x) for x in raw),
        seed=seed,
    )
