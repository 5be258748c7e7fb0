"""`/results` and `/v1/stats/sample-size` end to end, against references computed here.

Every field of the results document is recomputed in the test from the raw data the test sent,
with scipy/statsmodels (SPEC §3's oracles); P(best) and expected loss are checked within a few
Monte Carlo standard errors of a 200 000-draw reference.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import pytest
from litestar.testing import AsyncTestClient
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from tests.integration.helpers import auth, experiment_body

PHI = 0.1  # the mSPRT mixing effect documented in docs/statistics.md
MIN_LOOK = 30  # observations per arm before the sequential test looks
DRAWS = 10_000
REF_DRAWS = 200_000

Arms = list[dict[str, Any]]


# ---------------------------------------------------------------- driving the API


async def _create(
    client: AsyncTestClient[Any],
    keys: dict[str, str],
    key: str,
    *,
    start: bool = True,
    **more: Any,
) -> None:
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(key, **more), headers=h)
    assert r.status_code == 201, r.text
    if start:
        r = await client.post(f"/v1/experiments/{key}/start", headers=h)
        assert r.status_code == 200, r.text


async def _decide(
    client: AsyncTestClient[Any], keys: dict[str, str], key: str, unit: str
) -> dict[str, Any]:
    r = await client.post(
        "/v1/decide", json={"experiment": key, "unit_id": unit}, headers=auth(keys["decide"])
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _rewards(
    client: AsyncTestClient[Any], keys: dict[str, str], items: list[dict[str, Any]]
) -> None:
    for start in range(0, len(items), 1000):
        r = await client.post(
            "/v1/rewards", json=items[start : start + 1000], headers=auth(keys["decide"])
        )
        assert r.status_code == 202, r.text


async def _flushed(db: asyncpg.Connection, key: str, total: int) -> None:
    """Wait (≤ 2 s) until `total` exposures are counted, without looking at /results."""
    deadline = time.monotonic() + 2.0
    while True:
        n = await db.fetchval(
            "SELECT coalesce(sum(s.exposures), 0) FROM arm_stats s JOIN experiments e "
            "ON e.id = s.experiment_id WHERE e.key = $1",
            key,
        )
        if n == total:
            return
        assert time.monotonic() < deadline, f"{n} of {total} exposures after 2 s"
        await asyncio.sleep(0.02)


async def _results(client: AsyncTestClient[Any], keys: dict[str, str], key: str) -> dict[str, Any]:
    r = await client.get(f"/v1/experiments/{key}/results", headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    assert "NaN" not in r.text and "Infinity" not in r.text
    return r.json()  # type: ignore[no-any-return]


async def _run(
    client: AsyncTestClient[Any],
    keys: dict[str, str],
    key: str,
    units: int,
    reward: Any,
    *,
    first_unit: int = 0,
) -> list[tuple[str, dict[str, float]]]:
    """Decide for `units` units, post `reward(arm, rng) -> {metric: value}` for each."""
    rng = np.random.default_rng(first_unit + 17)
    out: list[tuple[str, dict[str, float]]] = []
    items: list[dict[str, Any]] = []
    for u in range(first_unit, first_unit + units):
        d = await _decide(client, keys, key, f"unit-{u}")
        values = reward(d["arm"], rng)
        out.append((d["arm"], values))
        items += [
            {"decision_id": d["decision_id"], "metric": m, "value": v} for m, v in values.items()
        ]
    await _rewards(client, keys, items)
    return out


# ---------------------------------------------------------------- the reference


def _seq_p(z: float, n_a: float, n_c: float, *, one_sided: bool = False) -> float:
    """One look's mSPRT p-value (Johari et al. 2017), mixing sd phi·sigma; 1 below the minimum."""
    if n_a < MIN_LOOK or n_c < MIN_LOOK or not math.isfinite(z):
        return 1.0
    r = PHI * PHI * n_a * n_c / (n_a + n_c)
    log_lr = -0.5 * math.log1p(r) + z * z * r / (2 * (1 + r))
    if one_sided:
        log_lr += math.log(2.0) + float(sps.norm.logcdf(z * math.sqrt(r / (1 + r))))
    return math.exp(-max(log_lr, 0.0))


def _summ(values: list[float], exposures: int, mtype: str) -> dict[str, Any]:
    s = float(sum(values))
    if mtype == "binary":
        n = exposures
        mean = s / n if n else None
        std = math.sqrt(mean * (1 - mean)) if mean is not None else None
        var = None if mean is None else mean * (1 - mean)
    else:
        n = len(values)
        mean = s / n if n else None
        std = float(np.std(values, ddof=1)) if n >= 2 else None
        var = None if std is None else std * std
    return {"n": n, "sum": s, "mean": mean, "std": std, "var": var}


def _reference(
    data: list[tuple[str, dict[str, float]]],
    arm_keys: list[str],
    weights: list[float],
    mtype: str,
    direction: str,
    alpha: float,
    guardrails: list[dict[str, Any]],
) -> dict[str, Any]:
    """SPEC §3 computed directly from the raw (arm, values) pairs."""
    exposures = [sum(1 for a, _ in data if a == k) for k in arm_keys]
    total = sum(exposures)
    per = {
        m: [[v[m] for a, v in data if a == k and m in v] for k in arm_keys]
        for m in ["reward", *(g["name"] for g in guardrails)]
    }
    summ = [_summ(per["reward"][i], exposures[i], mtype) for i in range(len(arm_keys))]
    z2 = float(sps.norm.ppf(1 - alpha / 2))
    arms = []
    for i, k in enumerate(arm_keys):
        s = summ[i]
        ci = None
        if mtype == "binary" and s["n"] > 0:
            ci = list(proportion_confint(s["sum"], s["n"], alpha=alpha, method="wilson"))
        elif mtype == "continuous" and s["n"] >= 2:
            half = float(sps.t.ppf(1 - alpha / 2, s["n"] - 1)) * s["std"] / math.sqrt(s["n"])
            ci = [s["mean"] - half, s["mean"] + half]
        arms.append(
            {
                "arm": k,
                "control": i == 0,
                "weight": weights[i],
                "exposures": exposures[i],
                "expected_exposures": total * weights[i],
                "count": s["n"],
                "sum": s["sum"],
                "mean": s["mean"],
                "std": s["std"],
                "ci": ci,
            }
        )
    c = summ[0]
    comps = []
    for i in range(1, len(arm_keys)):
        a = summ[i]
        diff = a["mean"] - c["mean"] if a["mean"] is not None and c["mean"] is not None else None
        p_value = diff_ci = None
        seq = 1.0
        if mtype == "binary" and diff is not None:
            with np.errstate(all="ignore"):
                _, p_value = proportions_ztest([a["sum"], c["sum"]], [a["n"], c["n"]])
            p_value = float(p_value) if math.isfinite(p_value) else None
            half = z2 * math.sqrt(a["var"] / a["n"] + c["var"] / c["n"])
            diff_ci = [diff - half, diff + half]
            pooled = (a["sum"] + c["sum"]) / (a["n"] + c["n"])
            v = pooled * (1 - pooled) * (1 / a["n"] + 1 / c["n"])
            if v > 0:
                seq = _seq_p(diff / math.sqrt(v), a["n"], c["n"])
        elif diff is not None and a["n"] >= 2 and c["n"] >= 2:
            res = sps.ttest_ind_from_stats(
                a["mean"], a["std"], a["n"], c["mean"], c["std"], c["n"], equal_var=False
            )
            p_value = float(res.pvalue)
            va, vc = a["var"] / a["n"], c["var"] / c["n"]
            df = (va + vc) ** 2 / (va**2 / (a["n"] - 1) + vc**2 / (c["n"] - 1))
            half = float(sps.t.ppf(1 - alpha / 2, df)) * math.sqrt(va + vc)
            diff_ci = [diff - half, diff + half]
            seq = _seq_p(diff / math.sqrt(va + vc), a["n"], c["n"])
        lift = diff / c["mean"] if diff is not None and c["mean"] else None
        comps.append(
            {
                "arm": arm_keys[i],
                "vs": arm_keys[0],
                "diff": diff,
                "diff_ci": diff_ci,
                "lift": lift,
                "p_value": p_value,
                "sequential_p_value": seq,
                "significant": seq < alpha,
            }
        )
    # an undefined p-value counts in the family as 1.0 and stays undefined (docs/statistics.md)
    adjusted = multipletests(
        [1.0 if x["p_value"] is None else x["p_value"] for x in comps], method="holm"
    )[1]
    for x, p in zip(comps, adjusted, strict=True):
        x["p_value_adjusted"] = None if x["p_value"] is None else float(p)
    srm = sps.chisquare(exposures, f_exp=[total * w for w in weights]) if total else None
    guards = []
    for g in guardrails:
        gs = [_summ(per[g["name"]][i], exposures[i], g["type"]) for i in range(len(arm_keys))]
        sign = 1.0 if g["direction"] == "maximize" else -1.0
        gc = gs[0]
        for i in range(1, len(arm_keys)):
            ga = gs[i]
            coef = 1.0 - sign * g.get("max_relative_degradation", 0.0)
            harm = sign * (coef * gc["mean"] - ga["mean"]) - g.get("max_degradation", 0.0)
            va, vc = ga["var"] / ga["n"], coef * coef * gc["var"] / gc["n"]
            zg = harm / math.sqrt(va + vc)
            df = (va + vc) ** 2 / (va**2 / (ga["n"] - 1) + vc**2 / (gc["n"] - 1))
            guards.append(
                {
                    "metric": g["name"],
                    "arm": arm_keys[i],
                    "vs": arm_keys[0],
                    "diff": ga["mean"] - gc["mean"],
                    "p_value": float(sps.t.sf(zg, df)),
                    "sequential_p_value": _seq_p(zg, ga["n"], gc["n"], one_sided=True),
                }
            )
    for x in guards:
        x["breached"] = x["sequential_p_value"] < alpha
    # P(best), expected loss: 200k joint posterior draws
    rng = np.random.default_rng(12345)
    if mtype == "binary":
        draws = np.column_stack(
            [rng.beta(1 + s["sum"], 1 + s["n"] - s["sum"], REF_DRAWS) for s in summ]
        )
    else:
        draws = np.column_stack(
            [rng.normal(s["mean"], s["std"] / math.sqrt(s["n"]), REF_DRAWS) for s in summ]
        )
    best = draws.max(axis=1) if direction == "maximize" else draws.min(axis=1)
    loss = (best[:, None] - draws) if direction == "maximize" else (draws - best[:, None])
    is_best = draws == best[:, None]
    for i, arm in enumerate(arms):
        arm["p_best"] = float(is_best[:, i].mean())
        arm["expected_loss"] = float(loss[:, i].mean())
        arm["loss_sd"] = float(loss[:, i].std())
    return {
        "arms": arms,
        "comparisons": comps,
        "guardrails": guards,
        "srm": {
            "p_value": None if srm is None else float(srm.pvalue),
            "flag": bool(srm is not None and srm.pvalue < 0.001),
        },
    }


def _close(actual: Any, expected: Any, what: str, rtol: float = 1e-7) -> None:
    if expected is None:
        assert actual is None, what
    elif isinstance(expected, list):
        assert actual is not None, what
        assert_allclose(actual, expected, rtol=rtol, atol=1e-12, err_msg=what)
    elif isinstance(expected, bool | str):
        assert actual == expected, what
    else:
        assert actual is not None, what
        assert_allclose(actual, expected, rtol=rtol, atol=1e-12, err_msg=what)


def _assert_matches(got: dict[str, Any], ref: dict[str, Any]) -> None:
    assert [a["arm"] for a in got["arms"]] == [a["arm"] for a in ref["arms"]]
    for a, r in zip(got["arms"], ref["arms"], strict=True):
        for f in (
            "arm",
            "control",
            "weight",
            "exposures",
            "expected_exposures",
            "count",
            "sum",
            "mean",
            "std",
            "ci",
        ):
            _close(a[f], r[f], f"arms[{r['arm']}].{f}")
        se_p = math.sqrt(max(r["p_best"] * (1 - r["p_best"]), 1e-4) / DRAWS)
        assert abs(a["p_best"] - r["p_best"]) <= 5 * se_p, (a["arm"], a["p_best"], r["p_best"])
        se_l = r["loss_sd"] / math.sqrt(DRAWS)
        assert abs(a["expected_loss"] - r["expected_loss"]) <= 5 * se_l + 1e-9, a["arm"]
    assert sum(a["p_best"] for a in got["arms"]) == pytest.approx(1.0)
    assert len(got["comparisons"]) == len(ref["comparisons"])
    for c, r in zip(got["comparisons"], ref["comparisons"], strict=True):
        for f in (
            "arm",
            "vs",
            "diff",
            "diff_ci",
            "lift",
            "p_value",
            "p_value_adjusted",
            "significant",
        ):
            _close(c[f], r[f], f"comparisons[{r['arm']}].{f}", rtol=1e-6)
        _close(c["sequential_p_value"], r["sequential_p_value"], f"seq p {r['arm']}", rtol=1e-6)
    assert len(got["guardrails"]) == len(ref["guardrails"])
    for g, r in zip(got["guardrails"], ref["guardrails"], strict=True):
        for f in ("metric", "arm", "vs", "diff", "p_value", "sequential_p_value", "breached"):
            _close(g[f], r[f], f"guardrails[{r['metric']}/{r['arm']}].{f}", rtol=1e-6)
    _close(got["srm"]["p_value"], ref["srm"]["p_value"], "srm.p_value", rtol=1e-6)
    assert got["srm"]["flag"] == ref["srm"]["flag"]


# ---------------------------------------------------------------- tests

GUARDRAILS = [
    {
        "name": "latency",
        "type": "continuous",
        "direction": "minimize",
        "max_relative_degradation": 0.2,
    },
    {"name": "quality", "type": "continuous", "direction": "maximize", "max_degradation": 0.5},
]
MEANS = {"arm0": 0.0, "arm1": 1.0, "arm2": 2.0}


@pytest.mark.parametrize(
    ("mtype", "direction", "confidence"),
    [
        ("binary", "maximize", 0.95),
        ("binary", "minimize", 0.9),
        ("continuous", "maximize", 0.95),
        ("continuous", "minimize", 0.99),
    ],
)
async def test_every_field_matches_the_reference(
    client: AsyncTestClient[Any],
    keys: dict[str, str],
    db: asyncpg.Connection,
    mtype: str,
    direction: str,
    confidence: float,
) -> None:
    """Every /results field equals scipy/statsmodels on the same data (P(best): within MC error)."""
    metrics = [{"name": "reward", "type": mtype, "direction": direction}, *GUARDRAILS]
    await _create(
        client,
        keys,
        "exp",
        arms=3,
        metrics=metrics,
        confidence_level=confidence,
        min_exposures_per_arm=10_000,
    )
    rates = {"arm0": 0.10, "arm1": 0.13, "arm2": 0.25}

    def reward(arm: str, rng: np.random.Generator) -> dict[str, float]:
        out: dict[str, float] = {
            "latency": float(rng.normal(100 + 10 * MEANS[arm], 15)),
            "quality": float(rng.normal(5 - MEANS[arm], 1)),
        }
        if mtype == "binary":
            if rng.random() < rates[arm]:
                out["reward"] = 1.0
            elif rng.random() < 0.5:
                out["reward"] = 0.0  # an explicit 0; the rest report nothing (also a 0)
        elif rng.random() < 0.9:  # continuous: 10 % report nothing
            out["reward"] = float(rng.normal(3.0 + 0.5 * MEANS[arm], 2.0))
        return out

    data = await _run(client, keys, "exp", 600, reward)
    await _flushed(db, "exp", 600)
    before = datetime.now(UTC)
    got = await _results(client, keys, "exp")
    ref = _reference(
        data, ["arm0", "arm1", "arm2"], [1 / 3] * 3, mtype, direction, 1 - confidence, GUARDRAILS
    )
    assert got["experiment"] == "exp"
    assert (got["status"], got["policy"], got["confidence_level"]) == (
        "running",
        "fixed",
        confidence,
    )
    assert got["metric"] == {"name": "reward", "type": mtype, "direction": direction}
    computed_at = datetime.fromisoformat(got["computed_at"].replace("Z", "+00:00"))
    assert abs((computed_at - before).total_seconds()) < 2
    assert isinstance(got["seed"], int)
    _assert_matches(got, ref)
    assert got["recommendation"]["action"] in ("continue", "rollback")
    assert set(got["recommendation"]) == {"action", "arm", "reason"}
    assert got["recommendation"]["reason"].endswith(".")
    assert {m["arms"][0]["arm"] for m in got["metrics"].values()} == {"arm0"}
    assert got["metrics"]["reward"]["arms"] == got["arms"]


async def test_sequential_p_value_never_increases(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """As data arrives the sequential p-value only falls, equals the stored one, gets < alpha."""
    await _create(
        client, keys, "seq", metrics=[{"name": "reward", "type": "binary", "direction": "maximize"}]
    )

    def reward(arm: str, rng: np.random.Generator) -> dict[str, float]:
        return {"reward": float(rng.random() < (0.1 if arm == "arm0" else 0.3))}

    seen: list[float] = []
    total = 0
    for step in range(8):
        await _run(client, keys, "seq", 150, reward, first_unit=step * 150)
        total += 150
        await _flushed(db, "seq", total)
        for _ in range(2):  # repeated looks at the same data
            got = await _results(client, keys, "seq")
            seen.append(got["comparisons"][0]["sequential_p_value"])
    stored = await db.fetchval(
        "SELECT p_value FROM sequential_state WHERE metric = 'reward' AND kind = 'two_sided'"
    )
    assert all(b <= a for a, b in itertools.pairwise(seen)), seen
    assert seen[0] <= 1.0 and seen[-1] < 0.05
    assert stored == seen[-1]
    assert got["comparisons"][0]["significant"] is True
    assert got["recommendation"]["action"] == "stop"
    assert got["recommendation"]["arm"] == "arm1"
    # concurrent looks agree and stay at or below the last reported value
    many = await asyncio.gather(*(_results(client, keys, "seq") for _ in range(5)))
    assert all(m["comparisons"][0]["sequential_p_value"] <= seen[-1] for m in many)


async def test_no_data_gives_nulls(client: AsyncTestClient[Any], keys: dict[str, str]) -> None:
    """Without data every statistic is null (binary P(best): the uniform prior), never an error."""
    await _create(client, keys, "empty", arms=3, start=False)
    got = await _results(client, keys, "empty")
    assert got["status"] == "draft"
    for a in got["arms"]:
        assert (a["exposures"], a["count"], a["sum"], a["mean"], a["std"], a["ci"]) == (
            0,
            0,
            0.0,
            None,
            None,
            None,
        )
        assert a["p_best"] == pytest.approx(1 / 3, abs=0.03)
    for c in got["comparisons"]:
        assert (
            c["diff"] is c["diff_ci"] is c["lift"] is c["p_value"] is c["p_value_adjusted"] is None
        )
        assert (c["sequential_p_value"], c["significant"]) == (1.0, False)
    assert got["srm"] == {"p_value": None, "flag": False}
    assert got["recommendation"] == {
        "action": "continue",
        "arm": None,
        "reason": "Nothing to do: the experiment has not been started yet (draft).",
    }
    await _create(
        client,
        keys,
        "empty-c",
        metrics=[{"name": "reward", "type": "continuous", "direction": "minimize"}],
    )
    got = await _results(client, keys, "empty-c")
    assert all(a["p_best"] is None and a["expected_loss"] is None for a in got["arms"])


async def test_degenerate_data_gives_nulls(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """All-zero rewards, a control mean of 0 and an arm without rewards yield nulls, not errors."""
    await _create(client, keys, "zeros")
    data = await _run(client, keys, "zeros", 80, lambda arm, rng: {"reward": 0.0})
    await _flushed(db, "zeros", 80)
    got = await _results(client, keys, "zeros")
    c = got["comparisons"][0]
    # identical all-zero arms: no evidence of a difference (the core's documented limit, 1.0)
    assert c["diff"] == 0.0 and c["lift"] is None and c["p_value"] == 1.0
    assert c["diff_ci"] == [0.0, 0.0]
    assert c["sequential_p_value"] == 1.0
    assert all(a["mean"] == 0.0 and a["std"] == 0.0 for a in got["arms"])
    assert got["arms"][0]["ci"] == pytest.approx(
        list(proportion_confint(0, got["arms"][0]["count"], alpha=0.05, method="wilson")), abs=1e-12
    )
    assert len(data) == 80

    # continuous: the control reports only zeros, arm1 reports nothing at all
    await _create(
        client,
        keys,
        "holes",
        metrics=[{"name": "reward", "type": "continuous", "direction": "maximize"}],
    )
    await _run(client, keys, "holes", 60, lambda arm, rng: {"reward": 0.0} if arm == "arm0" else {})
    await _flushed(db, "holes", 60)
    got = await _results(client, keys, "holes")
    control, arm1 = got["arms"]
    assert (control["mean"], control["std"]) == (0.0, 0.0)
    assert (arm1["count"], arm1["mean"], arm1["std"], arm1["ci"]) == (0, None, None, None)
    assert arm1["p_best"] is None and arm1["expected_loss"] is None
    c = got["comparisons"][0]
    assert c["diff"] is c["lift"] is c["p_value"] is c["diff_ci"] is None
    assert c["sequential_p_value"] == 1.0


async def test_unknown_experiment_and_scope(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """Results of an unknown experiment are a 404; a decide key gets a 403."""
    r = await client.get("/v1/experiments/nope/results", headers=auth(keys["admin"]))
    assert r.status_code == 404
    await _create(client, keys, "exp", start=False)
    r = await client.get("/v1/experiments/exp/results", headers=auth(keys["decide"]))
    assert r.status_code == 403


async def test_thirty_two_arms_are_fast(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """A 32-arm experiment's results take well under 100 ms."""
    await _create(client, keys, "wide", policy="thompson", arms=32)
    await _run(
        client,
        keys,
        "wide",
        640,
        lambda arm, rng: {"reward": float(rng.random() < 0.1 + int(arm[3:]) / 200)},
    )
    await _flushed(db, "wide", 640)
    await _results(client, keys, "wide")  # warm up
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        got = await _results(client, keys, "wide")
        times.append(time.perf_counter() - t0)
    median_ms = sorted(times)[5] * 1000
    print(f"32-arm /results median {median_ms:.1f} ms (min {min(times) * 1000:.1f} ms)")
    assert median_ms < 100
    assert len(got["arms"]) == 32 and len(got["comparisons"]) == 31
    assert sum(a["exposures"] for a in got["arms"]) == 640


# ---------------------------------------------------------------- sample size


def _n_binary(p1: float, delta: float, alpha: float, power: float) -> int:
    p2 = p1 + delta
    pb = (p1 + p2) / 2
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    n = (za * math.sqrt(2 * pb * (1 - pb)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(n / delta**2 - 1e-9)


def _n_continuous(std: float, delta: float, alpha: float, power: float) -> int:
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    return math.ceil(2 * (za + zb) ** 2 * std**2 / delta**2 - 1e-9)


@pytest.mark.parametrize(
    ("body", "per_arm"),
    [
        ({"type": "binary", "baseline": 0.1, "mde": 0.02}, _n_binary(0.1, 0.02, 0.05, 0.8)),
        ({"type": "binary", "baseline": 0.1, "mde_relative": 0.1}, _n_binary(0.1, 0.01, 0.05, 0.8)),
        (
            {
                "type": "binary",
                "baseline": 0.3,
                "mde": -0.05,
                "alpha": 0.01,
                "power": 0.9,
                "arms": 4,
            },
            _n_binary(0.3, 0.05, 0.01, 0.9),
        ),
        (
            {"type": "continuous", "baseline": 10, "mde": 0.5, "std": 3},
            _n_continuous(3, 0.5, 0.05, 0.8),
        ),
        (
            {"type": "continuous", "baseline": 200, "mde_relative": -0.02, "std": 40, "arms": 3},
            _n_continuous(40, 4, 0.05, 0.8),
        ),
    ],
)
async def test_sample_size_matches_the_formulas(
    client: AsyncTestClient[Any], keys: dict[str, str], body: dict[str, Any], per_arm: int
) -> None:
    """per_arm is the SPEC formula (scipy.stats.norm) and total = per_arm·arms, for any key."""
    r = await client.post("/v1/stats/sample-size", json=body, headers=auth(keys["admin"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"per_arm": per_arm, "total": per_arm * body.get("arms", 2)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "binary", "baseline": 0.1}, "mde"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "mde_relative": 0.1}, "mde"),
        ({"type": "binary", "baseline": 1.5, "mde": 0.01}, "baseline"),
        ({"type": "binary", "baseline": 0.95, "mde": 0.1}, "mde"),
        ({"type": "binary", "baseline": 0.1, "mde_relative": 0.0}, "mde_relative"),
        ({"type": "continuous", "baseline": 1, "mde": 0.1}, "std"),
        ({"type": "continuous", "baseline": 1, "mde": 0.1, "std": -1}, "std"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "alpha": 0}, "alpha"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "power": 1}, "power"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "arms": 1}, "arms"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "arms": 2.5}, "arms"),
        ({"type": "ratio", "baseline": 0.1, "mde": 0.01}, "type"),
        ({"baseline": 0.1, "mde": 0.01}, ""),
        ({"type": "binary", "baseline": "0.1", "mde": 0.01}, "baseline"),
        ({"type": "binary", "baseline": 0.1, "mde": 0.01, "extra": 1}, ""),
    ],
)
async def test_sample_size_rejects_bad_input(
    client: AsyncTestClient[Any], keys: dict[str, str], body: dict[str, Any], field: str
) -> None:
    """Invalid sample-size input is a 422 whose `extra` names the field."""
    r = await client.post("/v1/stats/sample-size", json=body, headers=auth(keys["admin"]))
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["detail"]
    assert err["extra"][0]["field"] == field, err


async def test_sample_size_infinite_and_auth(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """An overflowing number is a 422 naming it; no key is a 401; a broken body is a 400."""
    r = await client.post(
        "/v1/stats/sample-size",
        content='{"type": "binary", "baseline": 1e400, "mde": 0.01}',
        headers=auth(keys["admin"]),
    )
    assert r.status_code == 422 and r.json()["extra"][0]["field"] == "baseline", r.text
    r = await client.post("/v1/stats/sample-size", json={"type": "binary"})
    assert r.status_code == 401
    r = await client.post("/v1/stats/sample-size", content="{", headers=auth(keys["admin"]))
    assert r.status_code == 400
