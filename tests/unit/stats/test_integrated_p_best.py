"""P(best) and expected loss by numerical integration against closed forms and large Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from croupier.stats.posterior import best_arm, best_arm_integrated
from croupier.stats.report import analyze


def _normal_totals(n: list[int], mean: list[float], sd: list[float]) -> tuple[list[float], ...]:
    sums = [k * m for k, m in zip(n, mean, strict=True)]
    sums_sq = [(k - 1) * s * s + k * m * m for k, m, s in zip(n, mean, sd, strict=True)]
    return sums, sums_sq


def test_two_normal_arms_match_the_closed_form() -> None:
    """Two normal posteriors: P(θ₁ > θ₀) = Φ(δ/σ) and the loss E[max(θ₁ − θ₀, 0)] = δΦ + σφ."""
    n, mean, sd = [1000, 1200], [10.0, 10.3], [3.0, 3.5]
    sums, sums_sq = _normal_totals(n, mean, sd)
    got = best_arm_integrated("continuous", "maximize", n, sums, sums_sq)
    assert got is not None and got.p_best is not None and got.expected_loss is not None
    var = sd[0] ** 2 / n[0] + sd[1] ** 2 / n[1]
    delta, sigma = mean[1] - mean[0], math.sqrt(var)
    p1 = float(special.ndtr(delta / sigma))
    loss0 = delta * p1 + sigma * math.exp(-delta * delta / (2 * var)) / math.sqrt(2 * math.pi)
    assert got.p_best[1] == pytest.approx(p1, abs=1e-4)
    assert got.expected_loss[0] == pytest.approx(loss0, abs=1e-5)
    assert got.expected_loss[1] == pytest.approx(loss0 - delta, abs=1e-5)
    assert got.seed == 0 and got.draws == 0


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(
    ("exposures", "rate"),
    [([5000, 5100, 5200, 5300], [0.05, 0.055, 0.06, 0.05]), ([3, 10, 0], [0.3, 0.1, 0.0]),
     ([20000, 150], [0.01, 0.02])],
)
def test_beta_arms_match_a_large_monte_carlo(
    direction: str, exposures: list[int], rate: list[float]
) -> None:
    """Beta posteriors: within 5 standard errors of 400,000 Monte Carlo draws."""
    n = np.asarray(exposures, dtype=float)
    sums = np.floor(n * np.asarray(rate))
    got = best_arm_integrated("binary", direction, n, sums, sums)  # type: ignore[arg-type]
    draws = 400_000
    ref = best_arm(
        "binary", direction, n, sums, sums, rng=np.random.default_rng(3), draws=draws  # type: ignore[arg-type]
    )
    assert got is not None and got.p_best is not None and ref.p_best is not None
    assert got.expected_loss is not None and ref.expected_loss is not None
    assert math.isclose(sum(got.p_best), 1.0, abs_tol=1e-9)
    for p, q in zip(got.p_best, ref.p_best, strict=True):
        assert abs(p - q) <= 5 * math.sqrt(max(q * (1 - q), 1e-4) / draws) + 1e-4
    for p, q in zip(got.expected_loss, ref.expected_loss, strict=True):
        assert p >= 0.0 and abs(p - q) <= 0.02 * q + 1e-5


def test_point_masses_and_missing_data() -> None:
    """A zero-variance continuous arm cannot be integrated (None: draw instead); fewer than two
    rewards leaves P(best) undefined, as with Monte Carlo."""
    assert best_arm_integrated("continuous", "maximize", [10, 10], [50, 60], [250, 360]) is None
    undefined = best_arm_integrated("continuous", "maximize", [1, 10], [5, 60], [25, 400])
    assert undefined is not None and undefined.p_best is None


def test_analyze_integrates_and_falls_back_to_draws() -> None:
    """`analyze(integrate=True)` reports the integrated P(best) (seed 0, no draws) and draws
    when integration does not apply."""
    common = {"direction": "maximize", "alpha": 0.05, "control": 0,
              "sequential_states": None, "rng": np.random.default_rng(0)}
    integrated = analyze(
        metric_type="binary", exposures=[100, 100], expected_exposures=[100, 100],
        count=[100, 100], sums=[10, 20], sums_sq=[10, 20], integrate=True, **common,  # type: ignore[arg-type]
    )
    assert integrated.draws == 0 and integrated.arms[1].p_best is not None
    assert integrated.arms[1].p_best > 0.9
    drawn = analyze(
        metric_type="continuous", exposures=[10, 10], expected_exposures=[10, 10],
        count=[10, 10], sums=[50, 60], sums_sq=[250, 360], integrate=True, **common,  # type: ignore[arg-type]
    )
    assert drawn.draws > 0 and drawn.arms[1].p_best == 1.0
