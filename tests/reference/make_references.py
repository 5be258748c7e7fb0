"""Compute reference values for croupier.stats with scipy/statsmodels and write references.json.

Run from the repository root:  python tests/reference/make_references.py
The inputs are fixed below; the outputs come only from the named oracles (and, for Monte Carlo
quantities, from numerical integration), never from croupier itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

OUT = Path(__file__).with_name("references.json")


def wilson_cases() -> list[dict[str, Any]]:
    cases = [
        (0, 10, 0.05),
        (1, 10, 0.05),
        (5, 10, 0.05),
        (10, 10, 0.05),
        (37, 250, 0.1),
        (1234, 10000, 0.01),
        (3, 7, 0.2),
        (999, 1000, 0.05),
    ]
    out = []
    for x, n, alpha in cases:
        lo, hi = proportion_confint(x, n, alpha=alpha, method="wilson")
        out.append({"successes": x, "n": n, "alpha": alpha, "ci": [float(lo), float(hi)]})
    return out


def t_interval_cases() -> list[dict[str, Any]]:
    cases = [
        (1.5, 2.0, 2, 0.05),
        (0.0, 1.0, 10, 0.05),
        (-3.2, 0.5, 31, 0.1),
        (100.0, 25.0, 1000, 0.01),
        (7.0, 0.0, 5, 0.05),
    ]
    out = []
    for mean, std, n, alpha in cases:
        half = stats.t.ppf(1 - alpha / 2, n - 1) * std / math.sqrt(n)
        lo, hi = (mean - half, mean + half)
        if std > 0:
            lo, hi = stats.t.interval(1 - alpha, n - 1, loc=mean, scale=std / math.sqrt(n))
        out.append({"mean": mean, "std": std, "n": n, "alpha": alpha, "ci": [float(lo), float(hi)]})
    return out


def two_proportion_cases() -> list[dict[str, Any]]:
    cases = [
        (12, 100, 10, 100, 0.05),
        (130, 1000, 100, 1000, 0.05),
        (5, 40, 15, 60, 0.1),
        (450, 5000, 520, 5100, 0.01),
        (0, 50, 3, 50, 0.05),
        (50, 50, 45, 50, 0.05),
    ]
    out = []
    for xa, na, xc, nc, alpha in cases:
        _, p = proportions_ztest([xa, xc], [na, nc])
        lo, hi = confint_proportions_2indep(
            xa, na, xc, nc, method="wald", compare="diff", alpha=alpha
        )
        out.append(
            {
                "x_arm": xa,
                "n_arm": na,
                "x_control": xc,
                "n_control": nc,
                "alpha": alpha,
                "diff": xa / na - xc / nc,
                "p_value": float(p),
                "diff_ci": [float(lo), float(hi)],
            }
        )
    return out


def welch_cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(20240601)
    specs = [
        (5, 8, 1.0, 1.0, 1.0, 2.0, 0.05),
        (40, 25, 10.0, 3.0, 11.0, 6.0, 0.05),
        (200, 300, 0.5, 0.2, 0.45, 0.25, 0.1),
        (3, 3, 0.0, 1.0, 0.0, 1.0, 0.01),
    ]
    out = []
    for na, nc, ma, sa, mc, sc, alpha in specs:
        a = rng.normal(ma, sa, na)
        c = rng.normal(mc, sc, nc)
        res = stats.ttest_ind(a, c, equal_var=False)
        ci = res.confidence_interval(confidence_level=1 - alpha)
        p2 = stats.ttest_ind_from_stats(
            a.mean(), a.std(ddof=1), na, c.mean(), c.std(ddof=1), nc, equal_var=False
        ).pvalue
        out.append(
            {
                "n_arm": na,
                "sum_arm": float(a.sum()),
                "sum_sq_arm": float((a * a).sum()),
                "mean_arm": float(a.mean()),
                "std_arm": float(a.std(ddof=1)),
                "n_control": nc,
                "sum_control": float(c.sum()),
                "sum_sq_control": float((c * c).sum()),
                "mean_control": float(c.mean()),
                "std_control": float(c.std(ddof=1)),
                "alpha": alpha,
                "diff": float(a.mean() - c.mean()),
                "p_value": float(res.pvalue),
                "p_value_from_stats": float(p2),
                "diff_ci": [float(ci.low), float(ci.high)],
            }
        )
    return out


def holm_cases() -> list[dict[str, Any]]:
    cases = [
        [0.01],
        [0.01, 0.04],
        [0.04, 0.01, 0.03],
        [0.2, 0.2, 0.001, 0.5, 0.049],
        [0.5, 0.9, 1.0],
        [0.0, 0.011, 0.012, 0.013],
    ]
    return [
        {"p_values": c, "adjusted": [float(x) for x in multipletests(c, method="holm")[1]]}
        for c in cases
    ]


def srm_cases() -> list[dict[str, Any]]:
    cases = [
        ([500, 500], [500.0, 500.0]),
        ([480, 520], [500.0, 500.0]),
        ([100, 130, 70], [100.0, 100.0, 100.0]),
        ([950, 50], [900.0, 100.0]),
        ([333, 333, 334], [333.3333333333, 333.3333333333, 333.3333333334]),
    ]
    out = []
    for obs, exp in cases:
        f_exp = np.asarray(exp) * (sum(obs) / sum(exp))
        out.append(
            {
                "exposures": obs,
                "expected_exposures": exp,
                "p_value": float(stats.chisquare(obs, f_exp=f_exp).pvalue),
            }
        )
    return out


def sample_size_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [
        {"type": "binary", "baseline": 0.1, "mde": 0.02},
        {"type": "binary", "baseline": 0.1, "mde_relative": 0.1, "alpha": 0.01, "power": 0.9},
        {"type": "binary", "baseline": 0.5, "mde": -0.05, "arms": 3},
        {"type": "continuous", "baseline": 10.0, "mde": 0.5, "std": 3.0},
        {
            "type": "continuous",
            "baseline": 200.0,
            "mde_relative": 0.02,
            "std": 50.0,
            "arms": 4,
            "power": 0.95,
        },
    ]
    out = []
    for case in cases:
        alpha = case.get("alpha", 0.05)
        power = case.get("power", 0.8)
        arms = case.get("arms", 2)
        delta = abs(case["mde"]) if "mde" in case else abs(case["baseline"] * case["mde_relative"])
        za = stats.norm.ppf(1 - alpha / 2)
        zb = stats.norm.ppf(power)
        if case["type"] == "binary":
            p1 = case["baseline"]
            p2 = p1 + delta
            pbar = (p1 + p2) / 2
            n = (
                za * math.sqrt(2 * pbar * (1 - pbar))
                + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
            ) ** 2 / delta**2
        else:
            n = 2 * (za + zb) ** 2 * case["std"] ** 2 / delta**2
        per_arm = math.ceil(n)
        out.append({"input": case, "per_arm": per_arm, "total": per_arm * arms})
    return out


def _best_integrals(dists: list[Any], lo: float, hi: float, direction: str) -> dict[str, Any]:
    """Exact P(best) and expected loss for independent continuous posteriors by quadrature."""
    k = len(dists)
    p_best, e_best = [], 0.0
    for i in range(k):

        def dens(x: float, i: int = i) -> float:
            other = 1.0
            for j in range(k):
                if j != i:
                    other *= dists[j].cdf(x) if direction == "maximize" else dists[j].sf(x)
            return float(dists[i].pdf(x) * other)

        p = integrate.quad(dens, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11)[0]
        m = integrate.quad(
            lambda x, d=dens: x * d(x), lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11
        )[0]
        p_best.append(p)
        e_best += m
    means = [float(d.mean()) for d in dists]
    loss = [e_best - m if direction == "maximize" else m - e_best for m in means]
    return {"p_best": p_best, "expected_loss": loss}


def posterior_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [
        {
            "metric_type": "binary",
            "direction": "maximize",
            "count": [100, 100],
            "sums": [10, 14],
            "sums_sq": [10, 14],
        },
        {
            "metric_type": "binary",
            "direction": "minimize",
            "count": [400, 380, 420],
            "sums": [40, 30, 50],
            "sums_sq": [40, 30, 50],
        },
        {
            "metric_type": "binary",
            "direction": "maximize",
            "count": [0, 20],
            "sums": [0, 3],
            "sums_sq": [0, 3],
        },
        {
            "metric_type": "continuous",
            "direction": "maximize",
            "count": [50, 60],
            "sums": [50 * 1.0, 60 * 1.1],
            "sums_sq": [50 * (1.0 + 0.25 * 49 / 50), 60 * (1.21 + 0.36 * 59 / 60)],
        },
        {
            "metric_type": "continuous",
            "direction": "minimize",
            "count": [30, 30, 40],
            "sums": [30 * 2.0, 30 * 2.1, 40 * 1.95],
            "sums_sq": [
                30 * 4.0 + 29 * 0.5**2,
                30 * 4.41 + 29 * 0.4**2,
                40 * 1.95**2 + 39 * 0.6**2,
            ],
        },
    ]
    out = []
    for case in cases:
        n = np.asarray(case["count"], dtype=float)
        s = np.asarray(case["sums"], dtype=float)
        ss = np.asarray(case["sums_sq"], dtype=float)
        if case["metric_type"] == "binary":
            dists = [stats.beta(1 + si, 1 + ni - si) for ni, si in zip(n, s, strict=True)]
            lo, hi = 0.0, 1.0
        else:
            mean = s / n
            var = (ss - s * mean) / (n - 1)
            dists = [
                stats.norm(m, math.sqrt(v / ni)) for m, v, ni in zip(mean, var, n, strict=True)
            ]
            lo = min(d.ppf(1e-12) for d in dists)
            hi = max(d.isf(1e-12) for d in dists)
        out.append({**case, **_best_integrals(dists, lo, hi, case["direction"])})
    return out


def msprt_cases() -> list[dict[str, Any]]:
    """Mixture likelihood ratio Λ by quadrature over the mixing density (two- and one-sided)."""
    cases = [
        (0.02, 1e-4, 500, 500, 0.1),
        (-0.5, 0.04, 40, 60, 0.1),
        (1.3, 0.25, 100, 100, 0.3),
        (0.0, 1.0, 1000, 1000, 0.1),
        (0.3, 0.01, 2000, 1000, 0.05),
    ]
    out = []
    for est, var, na, nc, phi in cases:
        tau2 = phi**2 * na * nc / (na + nc) * var
        tau = math.sqrt(tau2)
        sd = math.sqrt(var)

        def ratio(theta: float, est: float = est, sd: float = sd) -> float:
            return float(stats.norm.pdf(est, theta, sd) / stats.norm.pdf(est, 0.0, sd))

        two = integrate.quad(
            lambda t, tau=tau: ratio(t) * stats.norm.pdf(t, 0, tau),
            -np.inf,
            np.inf,
            epsabs=0,
            epsrel=1e-12,
            limit=400,
        )[0]
        one = integrate.quad(
            lambda t, tau=tau: ratio(t) * 2 * stats.norm.pdf(t, 0, tau),
            0,
            np.inf,
            epsabs=0,
            epsrel=1e-12,
            limit=400,
        )[0]
        out.append(
            {
                "estimate": est,
                "variance": var,
                "n_arm": na,
                "n_control": nc,
                "mixing_effect": phi,
                "lr_two_sided": two,
                "lr_one_sided": one,
            }
        )
    return out


def main() -> None:
    refs = {
        "wilson": wilson_cases(),
        "t_interval": t_interval_cases(),
        "two_proportion": two_proportion_cases(),
        "welch": welch_cases(),
        "holm": holm_cases(),
        "srm": srm_cases(),
        "sample_size": sample_size_cases(),
        "posterior": posterior_cases(),
        "msprt": msprt_cases(),
    }
    OUT.write_text(json.dumps(refs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
