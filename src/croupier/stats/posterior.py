# Docstrings use mathematical notation (minus signs, Greek letters) on purpose.
"""Posterior of each arm's mean, P(best) and expected loss by seeded Monte Carlo or by
numerical integration.

Binary metric: Beta(1 + sum, 1 + n − sum) (a uniform prior). Continuous metric: the normal
approximation Normal(mean, s²/count) with the sample variance s² (ddof 1).

:func:`best_arm` draws: the generator passed in is used only to draw a fresh 63-bit seed; the
draws come from a new generator seeded with it, and the seed is returned so any result can be
reproduced exactly. :func:`best_arm_integrated` computes the same quantities deterministically
by one-dimensional quadrature (P(best_i) = ∫ f_i Π_{j≠i} F_j), about 20 times faster; it is
what the optimizer uses every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

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


INTEGRATION_POINTS_PER_ARM = 201
"""Quadrature nodes per arm, spread uniformly over its posterior mean ± 12 standard deviations
(about 8 nodes per standard deviation)."""

_WINDOW_SD = 12.0


_CHUNK_ELEMENTS = 20_000
"""Experiments integrated together are chunked so that one (experiments, nodes, arms) array
holds about this many numbers (it stays in the CPU cache; larger chunks are slower)."""


def best_arm_integrated(
    metric_type: MetricType,
    direction: Direction,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    *,
    points_per_arm: int = INTEGRATION_POINTS_PER_ARM,
) -> BestArm | None:
    """P(best) and expected loss per arm by numerical integration (no Monte Carlo).

    With f_i, F_i the posterior density and CDF of arm i and H = Π_j F_j (maximize):
    P(best_i) = ∫ f_i · Π_{j≠i} F_j dx and expected_loss_i = E[max] − E[θ_i] = ∫ (F_i − H) dx;
    minimizing uses the survival functions S_j = 1 − F_j instead. The nodes are the union of a
    uniform grid over each arm's mean ± 12 sd (clipped to [0, 1] for Beta). Normal CDFs are
    exact; Beta CDFs are the cumulative integral of the density by the trapezoid rule with the
    Euler–Maclaurin end correction (error O(h⁴)). The absolute error of P(best) is below 5e-4
    (tests/unit/stats/test_integrated_p_best.py), a tenth of the standard error of 10,000
    Monte Carlo draws. ``seed`` and ``draws`` of the result are 0 (nothing is drawn).

    Returns None where the quadrature does not apply and the caller should draw instead: a
    posterior that is a point mass (a continuous arm with zero variance). A continuous arm with
    fewer than two rewards gives the undefined result (``p_best`` None), as :func:`best_arm`.
    """
    n = np.asarray(count, dtype=np.float64).reshape(-1)
    if n.size == 0:
        return None
    return best_arm_integrated_many(
        metric_type,
        direction,
        n[None, :],
        np.asarray(sums, dtype=np.float64).reshape(1, -1),
        np.asarray(sums_sq, dtype=np.float64).reshape(1, -1),
        points_per_arm=points_per_arm,
    )[0]


def best_arm_integrated_many(
    metric_type: MetricType,
    direction: Direction,
    count: npt.ArrayLike,
    sums: npt.ArrayLike,
    sums_sq: npt.ArrayLike,
    *,
    points_per_arm: int = INTEGRATION_POINTS_PER_ARM,
) -> list[BestArm | None]:
    """:func:`best_arm_integrated` for many experiments with the same number of arms at once.

    Row e of the (experiments, arms) arrays is experiment e; the result of each is the same as
    :func:`best_arm_integrated` gives it alone. The nodes of each experiment are its own; an
    experiment's sorted nodes keep their repeats, whose zero-width intervals add exactly 0.
    """
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    ss = np.asarray(sums_sq, dtype=np.float64)
    if n.ndim != 2 or s.shape != n.shape or ss.shape != n.shape:
        raise ValueError("count, sums and sums_sq must be (experiments, arms) arrays of one shape.")
    experiments, k = n.shape
    if k == 0:
        return [None] * experiments
    per_chunk = max(1, _CHUNK_ELEMENTS // (k * k * points_per_arm))
    out: list[BestArm | None] = []
    for start in range(0, experiments, per_chunk):
        rows = slice(start, start + per_chunk)
        out += _integrate(metric_type, direction, n[rows], s[rows], ss[rows], points_per_arm)
    return out


_UNDEFINED = BestArm(p_best=None, expected_loss=None, seed=0, draws=0)


def _integrate(
    metric_type: MetricType,
    direction: Direction,
    n: FloatArray,
    s: FloatArray,
    ss: FloatArray,
    points_per_arm: int,
) -> list[BestArm | None]:
    """best_arm_integrated_many for one chunk of experiments (rows).

    Arrays are laid out (experiments, arms, nodes): the long axis of nodes is the contiguous
    one, so every operation runs over long rows.
    """
    experiments = n.shape[0]
    out: list[BestArm | None] = [None] * experiments
    if metric_type == "binary":
        rows = np.arange(experiments)
        successes = np.clip(s, 0.0, np.maximum(n, 0.0))
        a = 1.0 + successes
        b = 1.0 + np.maximum(n, 0.0) - successes
        mean = a / (a + b)
        sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
        lo = np.maximum(mean - _WINDOW_SD * sd, 0.0)
        hi = np.minimum(mean + _WINDOW_SD * sd, 1.0)
    else:
        undefined = np.any(n < 2, axis=1)
        for e in np.flatnonzero(undefined).tolist():
            out[e] = _UNDEFINED
        rows = np.flatnonzero(~undefined)
        n, s, ss = n[rows], s[rows], ss[rows]
        mean = means(n, s)
        sd = np.sqrt(sample_variances(n, s, ss) / n)
        point_mass = ~np.all(np.isfinite(sd) & (sd > 0.0) & np.isfinite(mean), axis=1)
        rows, mean, sd = rows[~point_mass], mean[~point_mass], sd[~point_mass]
        lo = mean - _WINDOW_SD * sd
        hi = mean + _WINDOW_SD * sd
    if rows.size == 0:
        return out
    t = np.linspace(0.0, 1.0, points_per_arm)
    x = np.sort((lo[:, :, None] + (hi - lo)[:, :, None] * t).reshape(rows.size, -1), axis=1)
    ok = np.count_nonzero(x[:, 1:] != x[:, :-1], axis=1) >= 2  # at least 3 distinct nodes
    xs = x[:, None, :]
    if metric_type == "binary":
        pdf, cdf, ok = _beta_pdf_cdf(xs, a[:, :, None], b[:, :, None], ok)
    else:
        z = (xs - mean[:, :, None]) / sd[:, :, None]
        pdf = np.exp(-0.5 * z * z) / (sd[:, :, None] * np.sqrt(2.0 * np.pi))
        cdf = special.ndtr(z)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p_best, loss, ok = _best_from_grid(direction, xs, pdf, cdf, ok)
    p_list, loss_list = p_best.tolist(), loss.tolist()
    for j, (e, good) in enumerate(zip(rows.tolist(), ok.tolist(), strict=True)):
        if good:
            out[e] = BestArm(
                p_best=tuple(p_list[j]), expected_loss=tuple(loss_list[j]), seed=0, draws=0
            )
    return out


def _sequential_sum(values: FloatArray) -> FloatArray:
    """Sum over the last axis, adding the terms one after the other (as a reduction over the
    first axis of a C-ordered array does; a reduction over the contiguous axis adds pairwise
    and would round differently)."""
    return np.asarray(np.cumsum(values, axis=-1)[..., -1], dtype=np.float64)


def _beta_pdf_cdf(
    xs: FloatArray, a: FloatArray, b: FloatArray, ok: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Beta(a, b) densities and CDFs, (experiments, arms, nodes), at the nodes `xs`
    (experiments, 1, nodes) of the arms `a`, `b` (experiments, arms, 1).

    The density is exp(xlogy(a − 1, x) + xlog1py(b − 1, −x) − betaln(a, b)), from logarithms
    taken once per node rather than per node and arm; the CDF is the cumulative trapezoid with
    the Euler–Maclaurin end correction, normalised by its total.
    """
    a1, b1 = a - 1.0, b - 1.0
    flat_a, flat_b = bool(np.any(a == 1.0)), bool(np.any(b == 1.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # xlogy(c, x) is c·log(x), but 0 (not 0·log 0) when c = 0: fixed where it matters
        log_pdf = a1 * special.xlogy(1.0, xs)
        second = b1 * special.xlog1py(1.0, -xs)
        if flat_a:
            np.copyto(log_pdf, 0.0, where=(a == 1.0) & (xs == 0.0))
        if flat_b:
            np.copyto(second, 0.0, where=(b == 1.0) & (xs == 1.0))
        log_pdf += second
        log_pdf -= special.betaln(a, b)
        pdf = np.exp(log_pdf, out=log_pdf)
        # d/dx of the density, for the end correction of the cumulative trapezoid
        left = a1 / xs
        right = np.divide(b1, 1.0 - xs, out=second)
        if flat_a:
            np.copyto(left, 0.0, where=(a == 1.0) & (xs == 0.0))
        if flat_b:
            np.copyto(right, 0.0, where=(b == 1.0) & (xs == 1.0))
        left -= right
        dpdf = np.multiply(pdf, left, out=left)
    pdf[~np.isfinite(pdf)] = 0.0
    dpdf[~np.isfinite(dpdf)] = 0.0
    h = np.diff(xs, axis=2)
    pieces = pdf[:, :, 1:] + pdf[:, :, :-1]
    pieces *= 0.5 * h
    correction = dpdf[:, :, 1:] - dpdf[:, :, :-1]
    correction *= h * h / 12.0
    pieces -= correction
    np.maximum(pieces, 0.0, out=pieces)
    cdf = np.empty(pdf.shape)
    cdf[:, :, 0] = 0.0
    np.cumsum(pieces, axis=2, out=cdf[:, :, 1:])
    total = cdf[:, :, -1:].copy()
    ok = ok & np.all(total[:, :, 0] > 0.0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cdf /= total
        np.clip(cdf, 0.0, 1.0, out=cdf)
        pdf /= total
    return pdf, cdf, ok


def _best_from_grid(
    direction: Direction,
    xs: FloatArray,
    pdf: FloatArray,
    cdf: FloatArray,
    ok: npt.NDArray[np.bool_],
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """P(best) and expected loss of each row from densities and CDFs (experiments, arms, nodes)
    at the nodes `xs` (experiments, 1, nodes), by the trapezoid rule; `ok` also drops rows whose
    P(best) is not a usable distribution."""
    k = pdf.shape[1]
    other = cdf if direction == "maximize" else 1.0 - cdf
    # Π_{j≠i} other_j by prefix and suffix products (no division by a vanishing factor)
    others = np.empty_like(other)
    others[:, 0] = 1.0
    for j in range(1, k):
        np.multiply(others[:, j - 1], other[:, j - 1], out=others[:, j])
    suffix = np.ones_like(other[:, 0])
    for j in range(k - 2, -1, -1):
        suffix *= other[:, j + 1]
        others[:, j] *= suffix
    h = np.diff(xs, axis=2)
    y = np.multiply(pdf, others, out=pdf)
    areas = y[:, :, 1:] + y[:, :, :-1]
    areas *= h
    areas /= 2.0  # h·(y₀ + y₁)/2 as numpy.trapezoid computes it, to the last bit
    p_best = np.clip(_sequential_sum(areas), 0.0, None)
    ok = ok & ~(p_best.sum(axis=1) <= 0.0) & np.all(np.isfinite(p_best), axis=1)
    p_best = p_best / p_best.sum(axis=1, keepdims=True)
    everyone = others[:, :1] * other[:, :1]  # Π_j other_j
    y = np.subtract(other, everyone, out=others)
    areas = y[:, :, 1:] + y[:, :, :-1]
    areas *= h
    areas /= 2.0
    loss = _sequential_sum(areas)
    loss = np.maximum(np.where(np.isfinite(loss), loss, 0.0), 0.0)
    return p_best, loss, ok
