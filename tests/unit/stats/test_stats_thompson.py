"""Behaviour of the Thompson-sampling allocation: direction, top-two, floor, cap, learning."""

from __future__ import annotations

import numpy as np
import pytest

from croupier.stats.posterior import best_arm_from_samples
from croupier.stats.thompson import thompson_allocation, top_two_probabilities


@pytest.mark.parametrize(("direction", "winner"), [("maximize", 2), ("minimize", 0)])
def test_allocation_favours_the_best_arm_in_the_metric_direction(
    direction: str, winner: int
) -> None:
    """The arm with the best mean in the metric's direction gets the largest weight."""
    n = [2000, 2000, 2000]
    rates = [0.05, 0.08, 0.11]
    sums = [r * m for r, m in zip(rates, n, strict=True)]
    alloc = thompson_allocation(
        metric_type="binary",
        direction=direction,  # type: ignore[arg-type]
        count=n,
        sums=sums,
        sums_sq=sums,
        min_arm_weight=0.02,
        rng=np.random.default_rng(3),
    )
    assert int(np.argmax(alloc.weights)) == winner
    assert alloc.weights[winner] == pytest.approx(1 - 2 * 0.02, abs=1e-3)
    assert min(alloc.weights) >= 0.02 - 1e-12


def test_top_two_matches_russo_closed_form_on_the_same_draws() -> None:
    """TTTS weights equal beta*p_i + (1-beta)*p_i*sum_j p_j/(1-p_j) computed from the draws."""
    rng = np.random.default_rng(11)
    samples = rng.normal([0.0, 0.1, 0.15, 0.05], 0.1, size=(20_000, 4))
    p, _ = best_arm_from_samples(samples, direction="maximize")
    beta = 0.6
    expected = np.array(
        [
            beta * p[i] + (1 - beta) * p[i] * sum(p[j] / (1 - p[j]) for j in range(4) if j != i)
            for i in range(4)
        ]
    )
    got = top_two_probabilities(samples, direction="maximize", beta=beta)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert got.sum() == pytest.approx(1.0)
    # The runner-up gets more traffic than under plain probability matching.
    runner_up = int(np.argsort(p)[-2])
    assert got[runner_up] > p[runner_up]


def test_change_cap_limits_a_jump_toward_a_clear_winner() -> None:
    """With a clear winner the weights move from equal shares by at most the cap per arm."""
    alloc = thompson_allocation(
        metric_type="continuous",
        direction="maximize",
        count=[500, 500],
        sums=[500 * 1.0, 500 * 1.5],
        sums_sq=[500 * 2.0, 500 * 3.25],
        min_arm_weight=0.01,
        rng=np.random.default_rng(5),
        previous=[0.5, 0.5],
        max_change=0.1,
    )
    assert alloc.target[1] > 0.9
    assert alloc.weights == pytest.approx((0.4, 0.6), abs=1e-9)
    assert sum(alloc.weights) == pytest.approx(1.0)


@pytest.mark.simulation
def test_thompson_bandit_moves_traffic_to_the_best_arm() -> None:
    """Over 40 cycles of a 3-arm bandit, most runs end with the best arm holding most traffic."""
    rng = np.random.default_rng(909)
    rates = np.array([0.10, 0.10, 0.13])
    n_runs, cycles, per_cycle = 60, 40, 400
    final_best_weight = []
    for _ in range(n_runs):
        n = np.zeros(3)
        x = np.zeros(3)
        weights = np.full(3, 1 / 3)
        for _ in range(cycles):
            got = rng.multinomial(per_cycle, weights)
            x += rng.binomial(got, rates)
            n += got
            alloc = thompson_allocation(
                metric_type="binary",
                direction="maximize",
                count=n,
                sums=x,
                sums_sq=x,
                min_arm_weight=0.01,
                rng=rng,
                previous=weights,
                max_change=0.2,
                draws=10_000,
            )
            weights = np.asarray(alloc.weights)
        final_best_weight.append(weights[2])
    share = float(np.mean(np.asarray(final_best_weight) > 0.5))
    print(
        f"\nThompson 3-arm bandit (0.10, 0.10, 0.13), {n_runs} runs x {cycles} cycles x "
        f"{per_cycle}: best arm holds > 50 % of traffic at the end in {share:.2f} of runs, "
        f"median final weight {np.median(final_best_weight):.3f}"
    )
    assert share >= 0.8


def test_previous_weights_of_surviving_arms_are_renormalised() -> None:
    """Old weights that no longer sum to 1 (an arm was dropped) are renormalised before capping."""
    alloc = thompson_allocation(
        metric_type="binary",
        direction="maximize",
        count=[100, 100],
        sums=[10, 10],
        sums_sq=[10, 10],
        min_arm_weight=0.01,
        rng=np.random.default_rng(0),
        previous=[0.3, 0.3],
        max_change=0.05,
    )
    assert sum(alloc.weights) == pytest.approx(1.0)
    assert all(abs(w - 0.5) <= 0.05 + 1e-12 for w in alloc.weights)


def test_zero_draws_is_rejected() -> None:
    """Asking for no Monte Carlo draws is a programming error, reported as such."""
    with pytest.raises(ValueError, match="draws"):
        thompson_allocation(
            metric_type="binary",
            direction="maximize",
            count=[1, 1],
            sums=[0, 0],
            sums_sq=[0, 0],
            min_arm_weight=0.0,
            rng=np.random.default_rng(0),
            draws=0,
        )
