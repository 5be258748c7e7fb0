"""Closed forms against scipy/statsmodels values stored in tests/reference/references.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from croupier.stats.posterior import best_arm, posterior_samples
from croupier.stats.power import sample_size
from croupier.stats.report import analyze
from croupier.stats.sequential import mixture_log_lr
from croupier.stats.significance import (
    holm,
    t_interval,
    two_proportion_test,
    welch_test,
    wilson_interval,
)
from croupier.stats.srm import srm_test

REFS: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).parents[2] / "reference" / "references.json").read_text()
)
RTOL = 1e-6


@pytest.mark.parametrize("case", REFS["wilson"])
def test_wilson_matches_statsmodels(case: dict[str, Any]) -> None:
    """The Wilson interval equals statsmodels proportion_confint(method="wilson")."""
    ci = wilson_interval(case["successes"], case["n"], alpha=case["alpha"])
    assert ci is not None
    assert_allclose(ci, case["ci"], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("case", REFS["t_interval"])
def test_t_interval_matches_scipy(case: dict[str, Any]) -> None:
    """The t interval equals scipy.stats.t.interval around the mean."""
    ci = t_interval(case["mean"], case["std"], case["n"], alpha=case["alpha"])
    assert ci is not None
    assert_allclose(ci, case["ci"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["two_proportion"])
def test_two_proportion_matches_statsmodels(case: dict[str, Any]) -> None:
    """The pooled z-test p-value and Wald diff CI equal statsmodels' proportions functions."""
    res = two_proportion_test(
        case["x_arm"], case["n_arm"], case["x_control"], case["n_control"], alpha=case["alpha"]
    )
    assert res is not None
    assert res.p_value is not None
    assert res.diff_ci is not None
    assert_allclose(res.diff, case["diff"], rtol=RTOL)
    assert_allclose(res.p_value, case["p_value"], rtol=RTOL)
    assert_allclose(res.diff_ci, case["diff_ci"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["welch"])
def test_welch_matches_scipy(case: dict[str, Any]) -> None:
    """Welch's p-value and Welch-Satterthwaite CI equal scipy's ttest_ind(equal_var=False)."""
    res = welch_test(
        case["mean_arm"],
        case["std_arm"],
        case["n_arm"],
        case["mean_control"],
        case["std_control"],
        case["n_control"],
        alpha=case["alpha"],
    )
    assert res is not None
    assert res.p_value is not None
    assert res.diff_ci is not None
    assert_allclose(res.p_value, case["p_value"], rtol=RTOL)
    assert_allclose(res.p_value, case["p_value_from_stats"], rtol=RTOL)
    assert_allclose(res.diff_ci, case["diff_ci"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["welch"])
def test_analyze_continuous_matches_scipy_from_running_totals(case: dict[str, Any]) -> None:
    """analyze() reproduces scipy's Welch test from (count, sum, sum of squares) alone."""
    report = analyze(
        metric_type="continuous",
        direction="maximize",
        alpha=case["alpha"],
        control=1,
        exposures=[case["n_arm"], case["n_control"]],
        expected_exposures=[case["n_arm"], case["n_control"]],
        count=[case["n_arm"], case["n_control"]],
        sums=[case["sum_arm"], case["sum_control"]],
        sums_sq=[case["sum_sq_arm"], case["sum_sq_control"]],
        sequential_states=None,
        rng=np.random.default_rng(0),
    )
    comp = report.comparisons[0]
    assert comp.p_value is not None
    assert comp.diff_ci is not None
    assert_allclose(report.arms[0].std, case["std_arm"], rtol=RTOL)
    assert_allclose(comp.p_value, case["p_value"], rtol=RTOL)
    assert_allclose(comp.diff_ci, case["diff_ci"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["two_proportion"])
def test_analyze_binary_matches_statsmodels(case: dict[str, Any]) -> None:
    """analyze() on a binary metric reports statsmodels' z-test p-value, Wald CI and lift."""
    report = analyze(
        metric_type="binary",
        direction="maximize",
        alpha=case["alpha"],
        control=0,
        exposures=[case["n_control"], case["n_arm"]],
        expected_exposures=[case["n_control"], case["n_arm"]],
        count=[0, 0],
        sums=[case["x_control"], case["x_arm"]],
        sums_sq=[case["x_control"], case["x_arm"]],
        sequential_states=None,
        rng=np.random.default_rng(0),
    )
    comp = report.comparisons[0]
    assert comp.p_value is not None
    assert comp.diff_ci is not None
    assert_allclose(comp.p_value, case["p_value"], rtol=RTOL)
    assert_allclose(comp.diff_ci, case["diff_ci"], rtol=RTOL)
    control_mean = case["x_control"] / case["n_control"]
    if control_mean == 0:
        assert comp.lift is None
    else:
        assert comp.lift is not None
        assert_allclose(comp.lift, case["diff"] / control_mean, rtol=RTOL)


@pytest.mark.parametrize("case", REFS["holm"])
def test_holm_matches_statsmodels(case: dict[str, Any]) -> None:
    """Holm-adjusted p-values equal statsmodels multipletests(method="holm")."""
    adjusted = holm(case["p_values"])
    assert all(a is not None for a in adjusted)
    assert_allclose([a for a in adjusted if a is not None], case["adjusted"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["srm"])
def test_srm_matches_scipy_chisquare(case: dict[str, Any]) -> None:
    """The SRM p-value equals scipy chisquare(exposures, f_exp=expected_exposures)."""
    res = srm_test(case["exposures"], case["expected_exposures"])
    assert res.p_value is not None
    assert_allclose(res.p_value, case["p_value"], rtol=RTOL)
    assert res.flag == (case["p_value"] < 0.001)


@pytest.mark.parametrize("case", REFS["sample_size"])
def test_sample_size_matches_reference_formula(case: dict[str, Any]) -> None:
    """sample_size() returns exactly the per-arm and total counts of the SPEC's formulas."""
    res = sample_size(**case["input"])
    assert (res.per_arm, res.total) == (case["per_arm"], case["total"])


@pytest.mark.parametrize("case", REFS["msprt"])
def test_mixture_likelihood_ratio_matches_quadrature(case: dict[str, Any]) -> None:
    """The closed-form mixture likelihood ratios equal numerical integration over the prior."""
    z = case["estimate"] / math.sqrt(case["variance"])
    n_eff = case["n_arm"] * case["n_control"] / (case["n_arm"] + case["n_control"])
    r = case["mixing_effect"] ** 2 * n_eff
    two = math.exp(float(mixture_log_lr(z, r)))
    one = math.exp(float(mixture_log_lr(z, r, one_sided=True)))
    assert_allclose(two, case["lr_two_sided"], rtol=RTOL)
    assert_allclose(one, case["lr_one_sided"], rtol=RTOL)


@pytest.mark.parametrize("case", REFS["posterior"])
def test_monte_carlo_best_arm_within_standard_errors_of_exact(case: dict[str, Any]) -> None:
    """Monte Carlo P(best) and expected loss lie within 5 standard errors of exact integrals."""
    draws = 20_000
    res = best_arm(
        case["metric_type"],
        case["direction"],
        case["count"],
        case["sums"],
        case["sums_sq"],
        rng=np.random.default_rng(12345),
        draws=draws,
    )
    assert res.p_best is not None
    assert res.expected_loss is not None
    # Standard errors from the very draws used (the returned seed reproduces them).
    samples = posterior_samples(
        case["metric_type"],
        case["count"],
        case["sums"],
        case["sums_sq"],
        draws=draws,
        rng=np.random.default_rng(res.seed),
    )
    assert samples is not None
    if case["direction"] == "maximize":
        losses = samples.max(axis=1, keepdims=True) - samples
    else:
        losses = samples - samples.min(axis=1, keepdims=True)
    assert_allclose(losses.mean(axis=0), res.expected_loss, rtol=1e-9, atol=1e-12)
    exact_p = np.asarray(case["p_best"])
    se_p = np.sqrt(exact_p * (1 - exact_p) / draws)
    se_loss = losses.std(axis=0) / math.sqrt(draws)
    assert np.all(np.abs(np.asarray(res.p_best) - exact_p) <= 5 * se_p + 1e-12)
    assert np.all(np.abs(np.asarray(res.expected_loss) - case["expected_loss"]) <= 5 * se_loss)
