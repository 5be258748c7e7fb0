"""Seeded Monte Carlo simulations of the sequential tests, vectorised across experiments.

Run with ``pytest tests/unit/stats -m simulation -s`` to see the measured rates.
Each simulated experiment is monitored after every batch ("peeking"); the always-valid
p-value must keep the false-positive rate at or below alpha, while the fixed-horizon p-value
checked at every look is shown to inflate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special
from scipy import stats as sps

from croupier.stats.report import analyze, guardrail
from croupier.stats.sequential import degradation_terms, difference_terms, mixture_p_values

ALPHA = 0.05
FloatArray = npt.NDArray[np.float64]


def _bound(n_sims: int, alpha: float = ALPHA) -> float:
    """alpha plus two binomial standard errors of a rate estimated from n_sims experiments."""
    return alpha + 2.0 * math.sqrt(alpha * (1.0 - alpha) / n_sims)


@dataclass
class Monitor:
    """Per-simulation running state of the sequential and the naive fixed-horizon test."""

    n_sims: int

    def __post_init__(self) -> None:
        self.seq = np.ones(self.n_sims)
        self.naive_ever = np.zeros(self.n_sims, dtype=bool)
        self.first_n = np.full(self.n_sims, -1.0)

    def look(self, p_sequential: FloatArray, p_fixed: FloatArray, n_total: FloatArray) -> None:
        self.seq = np.minimum(self.seq, p_sequential)
        self.naive_ever |= p_fixed < ALPHA
        new = (self.seq < ALPHA) & (self.first_n < 0)
        self.first_n = np.where(new, n_total, self.first_n)

    @property
    def sequential_rate(self) -> float:
        return float(np.mean(self.seq < ALPHA))

    @property
    def naive_rate(self) -> float:
        return float(np.mean(self.naive_ever))

    @property
    def median_n_at_detection(self) -> float:
        hits = self.first_n[self.first_n >= 0]
        return float(np.median(hits)) if hits.size else math.nan


def _fixed_p(terms_estimate: FloatArray, terms_variance: FloatArray) -> FloatArray:
    z = np.abs(terms_estimate) / np.sqrt(np.where(terms_variance > 0, terms_variance, 1.0))
    return np.where(terms_variance > 0, 2.0 * special.ndtr(-z), 1.0)


def _simulate_binary(
    *, seed: int, n_sims: int, looks: int, batch: int, p_arm: float, p_control: float
) -> Monitor:
    rng = np.random.default_rng(seed)
    x_a = np.zeros(n_sims)
    x_c = np.zeros(n_sims)
    mon = Monitor(n_sims)
    for look in range(1, looks + 1):
        x_a += rng.binomial(batch, p_arm, n_sims)
        x_c += rng.binomial(batch, p_control, n_sims)
        n = float(batch * look)
        t = difference_terms("binary", n, x_a, x_a, n, x_c, x_c)
        mon.look(
            mixture_p_values(t.estimate, t.variance, n, n),
            _fixed_p(t.estimate, t.variance),
            np.full(n_sims, 2 * n),
        )
    return mon


def _simulate_continuous(
    *,
    seed: int,
    n_sims: int,
    looks: int,
    batch: int,
    draw: str,
    shift: float,
) -> Monitor:
    rng = np.random.default_rng(seed)
    totals = np.zeros((4, n_sims))  # sum_a, sum_sq_a, sum_c, sum_sq_c
    mon = Monitor(n_sims)
    for look in range(1, looks + 1):
        if draw == "lognormal":
            a = rng.lognormal(0.0, 1.0, (n_sims, batch)) + shift
            c = rng.lognormal(0.0, 1.0, (n_sims, batch))
        else:
            a = rng.normal(shift, 1.0, (n_sims, batch))
            c = rng.normal(0.0, 1.0, (n_sims, batch))
        totals += [a.sum(1), (a * a).sum(1), c.sum(1), (c * c).sum(1)]
        n = float(batch * look)
        t = difference_terms("continuous", n, totals[0], totals[1], n, totals[2], totals[3])
        mon.look(
            mixture_p_values(t.estimate, t.variance, n, n),
            _fixed_p(t.estimate, t.variance),
            np.full(n_sims, 2 * n),
        )
    return mon


@pytest.mark.simulation
def test_aa_binary_sequential_false_positive_rate_is_at_most_alpha() -> None:
    """In 2,000 binary A/A tests checked at 50 looks, the sequential test rejects <= alpha."""
    mon = _simulate_binary(seed=101, n_sims=2000, looks=50, batch=100, p_arm=0.1, p_control=0.1)
    print(
        f"\nA/A binary p=0.10, 2000 sims x 50 looks x 100/arm: "
        f"sequential FPR={mon.sequential_rate:.4f}, fixed-horizon p checked every look "
        f"FPR={mon.naive_rate:.4f}"
    )
    assert mon.sequential_rate <= _bound(2000)
    assert mon.naive_rate > _bound(2000)


@pytest.mark.simulation
def test_aa_continuous_skewed_sequential_false_positive_rate_is_at_most_alpha() -> None:
    """In 1,000 lognormal A/A tests checked at 25 looks, the sequential test rejects <= alpha."""
    mon = _simulate_continuous(
        seed=202, n_sims=1000, looks=25, batch=40, draw="lognormal", shift=0.0
    )
    print(
        f"\nA/A continuous lognormal(0,1), 1000 sims x 25 looks x 40/arm: "
        f"sequential FPR={mon.sequential_rate:.4f}, fixed-horizon p checked every look "
        f"FPR={mon.naive_rate:.4f}"
    )
    assert mon.sequential_rate <= _bound(1000)
    assert mon.naive_rate > _bound(1000)


@pytest.mark.simulation
def test_aa_binary_under_adaptive_allocation_keeps_false_positives_at_most_alpha() -> None:
    """With traffic shifted each look toward the apparent winner (floor 5 %), FPR stays <= alpha."""
    rng = np.random.default_rng(303)
    n_sims, looks, batch, p = 2000, 60, 100, 0.1
    x = np.zeros((2, n_sims))
    n = np.zeros((2, n_sims))
    share = np.full(n_sims, 0.5)
    mon = Monitor(n_sims)
    for _ in range(looks):
        to_arm = rng.binomial(batch, share)
        got = np.stack([to_arm, batch - to_arm]).astype(float)
        x += rng.binomial(got.astype(np.int64), p)
        n += got
        t = difference_terms("binary", n[0], x[0], x[0], n[1], x[1], x[1])
        mon.look(
            mixture_p_values(t.estimate, t.variance, n[0], n[1]),
            _fixed_p(t.estimate, t.variance),
            n.sum(0),
        )
        # Allocation by an approximate P(arm better) under Beta(1 + x, 1 + n - x) posteriors.
        mean = (x + 1.0) / (n + 2.0)
        var = mean * (1.0 - mean) / (n + 3.0)
        p_better = special.ndtr((mean[0] - mean[1]) / np.sqrt(var[0] + var[1]))
        share = 0.05 + 0.9 * p_better
    print(
        f"\nA/A binary with adaptive allocation, 2000 sims x 60 looks x 100: "
        f"sequential FPR={mon.sequential_rate:.4f}, naive FPR={mon.naive_rate:.4f}"
    )
    assert mon.sequential_rate <= _bound(2000)


@pytest.mark.simulation
def test_ab_binary_detects_a_real_lift() -> None:
    """A 10 % -> 12 % conversion lift is detected by the sequential test in most experiments."""
    mon = _simulate_binary(seed=404, n_sims=2000, looks=50, batch=200, p_arm=0.12, p_control=0.1)
    planned = math.ceil(
        (
            sps.norm.isf(0.025) * math.sqrt(2 * 0.11 * 0.89)
            + sps.norm.isf(0.2) * math.sqrt(0.1 * 0.9 + 0.12 * 0.88)
        )
        ** 2
        / 0.02**2
    )
    print(
        f"\nA/B binary 0.10 -> 0.12, 2000 sims, up to 50 looks x 200/arm: detection rate="
        f"{mon.sequential_rate:.4f}, median total sample size at detection="
        f"{mon.median_n_at_detection:.0f} (fixed-horizon 80 % power plan: {2 * planned} total)"
    )
    assert mon.sequential_rate >= 0.8


@pytest.mark.simulation
def test_ab_continuous_detects_a_small_standardized_effect() -> None:
    """A 0.1-sigma shift in a normal metric is detected by the sequential test in most runs."""
    mon = _simulate_continuous(seed=505, n_sims=1000, looks=40, batch=100, draw="normal", shift=0.1)
    print(
        f"\nA/B continuous normal, shift 0.1 sd, 1000 sims, up to 40 looks x 100/arm: "
        f"detection rate={mon.sequential_rate:.4f}, median total sample size at detection="
        f"{mon.median_n_at_detection:.0f} (fixed-horizon 80 % power plan: "
        f"{2 * math.ceil(2 * (sps.norm.isf(0.025) + sps.norm.isf(0.2)) ** 2 / 0.01)} total)"
    )
    assert mon.sequential_rate >= 0.7


def _simulate_guardrail(
    *, seed: int, direction: str, harm: float, tolerance: dict[str, float], n_sims: int = 1000
) -> Monitor:
    """Latency-like metric with control mean 1: the arm is worse by ``harm`` (absolute)."""
    rng = np.random.default_rng(seed)
    worse = harm if direction == "minimize" else -harm
    totals = np.zeros((4, n_sims))
    mon = Monitor(n_sims)
    looks, batch = 30, 100
    for look in range(1, looks + 1):
        a = rng.normal(1.0 + worse, 1.0, (n_sims, batch))
        c = rng.normal(1.0, 1.0, (n_sims, batch))
        totals += [a.sum(1), (a * a).sum(1), c.sum(1), (c * c).sum(1)]
        n = float(batch * look)
        t = degradation_terms(
            "continuous", direction, n, totals[0], totals[1], n, totals[2], totals[3], **tolerance
        )
        z = t.estimate / np.sqrt(t.variance)
        mon.look(
            mixture_p_values(t.estimate, t.variance, n, n, one_sided=True),
            special.ndtr(-z),
            np.full(n_sims, 2 * n),
        )
    return mon


@pytest.mark.simulation
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(
    "tolerance", [{"max_degradation": 0.05}, {"max_relative_degradation": 0.05}]
)
def test_guardrail_at_the_tolerance_boundary_breaches_at_most_alpha(
    direction: str, tolerance: dict[str, float]
) -> None:
    """An arm worse by exactly the tolerance is flagged in at most alpha of 1,000 monitored runs."""
    mon = _simulate_guardrail(seed=606, direction=direction, harm=0.05, tolerance=tolerance)
    print(
        f"\nguardrail {direction} {tolerance}, harm = tolerance, 1000 sims x 30 looks: "
        f"sequential breach rate={mon.sequential_rate:.4f}, naive={mon.naive_rate:.4f}"
    )
    assert mon.sequential_rate <= _bound(1000)


@pytest.mark.simulation
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_guardrail_detects_harm_three_times_the_tolerance(direction: str) -> None:
    """An arm worse by three times a 0.05 tolerance is rolled back in most monitored runs."""
    mon = _simulate_guardrail(
        seed=707, direction=direction, harm=0.15, tolerance={"max_degradation": 0.05}
    )
    print(
        f"\nguardrail {direction}, harm 0.15 vs tolerance 0.05: breach rate="
        f"{mon.sequential_rate:.4f}, median total n at breach={mon.median_n_at_detection:.0f}"
    )
    assert mon.sequential_rate >= 0.8


def test_report_uses_the_same_sequential_p_value_as_the_simulations() -> None:
    """analyze() and guardrail() report exactly the vectorised mSPRT p-value simulated here."""
    n, x_c, x_a = 4000, 400, 470
    report = analyze(
        metric_type="binary",
        direction="maximize",
        alpha=ALPHA,
        control=0,
        exposures=[n, n],
        expected_exposures=[n, n],
        count=[n, n],
        sums=[x_c, x_a],
        sums_sq=[x_c, x_a],
        sequential_states=None,
        rng=np.random.default_rng(0),
    )
    t = difference_terms("binary", n, x_a, x_a, n, x_c, x_c)
    expected = float(mixture_p_values(t.estimate, t.variance, n, n))
    assert report.comparisons[0].sequential_p_value == pytest.approx(expected, rel=1e-12)
    sums, sums_sq = [1000.0, 1100.0], [1000.0 * 2, 1100.0 * 1.1 * 2]
    checks = guardrail(
        metric_type="continuous",
        direction="minimize",
        alpha=ALPHA,
        control=0,
        count=[1000, 1000],
        sums=sums,
        sums_sq=sums_sq,
        sequential_states=None,
        max_relative_degradation=0.02,
    )
    g = degradation_terms(
        "continuous",
        "minimize",
        1000,
        sums[1],
        sums_sq[1],
        1000,
        sums[0],
        sums_sq[0],
        max_relative_degradation=0.02,
    )
    expected_g = float(mixture_p_values(g.estimate, g.variance, 1000, 1000, one_sided=True))
    assert checks[0].sequential_p_value == pytest.approx(expected_g, rel=1e-12)
