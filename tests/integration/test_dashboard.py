"""The dashboard over HTTP: the page and its files need no key and carry the right content
types, and `GET /v1/experiments/{key}/history` returns each comparison's always-valid p-value
over time, recorded (throttled) by the evaluations behind `/results`."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body


async def _running(
    client: AsyncTestClient[Any], keys: dict[str, str], key: str, **more: Any
) -> None:
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(key, **more), headers=h)
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/experiments/{key}/start", headers=h)
    assert r.status_code == 200, r.text


async def _traffic(
    client: AsyncTestClient[Any], keys: dict[str, str], key: str, units: range,
    *, rate: dict[str, float],
) -> None:
    """A decision per unit; arm `a` is rewarded 1 on a deterministic `rate[a]` share of them."""
    seen: dict[str, int] = {}
    rewards = []
    for i in units:
        r = await client.post(
            "/v1/decide", json={"experiment": key, "unit_id": f"{key}-u{i}"},
            headers=auth(keys["decide"]),
        )
        assert r.status_code == 200, r.text
        d = r.json()
        k = seen[d["arm"]] = seen.get(d["arm"], 0) + 1
        value = 1.0 if (k * rate[d["arm"]]) % 1.0 < rate[d["arm"]] else 0.0
        rewards.append({"decision_id": d["decision_id"], "value": value})
    r = await client.post("/v1/rewards", json=rewards, headers=auth(keys["decide"]))
    assert r.status_code == 202, r.text


async def _counted(db: asyncpg.Connection, key: str, total: int) -> None:
    """Wait (≤ 3 s) until `total` exposures of `key` are counted."""
    deadline = time.monotonic() + 3.0
    while True:
        n = int(await db.fetchval(
            "SELECT coalesce(sum(s.exposures), 0) FROM arm_stats s JOIN experiments e "
            "ON e.id = s.experiment_id WHERE e.key = $1", key,
        ))
        if n >= total or time.monotonic() > deadline:
            assert n == total
            return
        await asyncio.sleep(0.02)


async def test_page_and_assets_need_no_key_and_have_content_types(
    client: AsyncTestClient[Any],
) -> None:
    """`/ui` and every file it references are served without a key, with the right types."""
    r = await client.get("/ui")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', r.text)
    assert sorted(assets) == ["/ui/app.css", "/ui/app.js"]
    expected = {"/ui/app.js": "text/javascript", "/ui/app.css": "text/css"}
    for path in assets:
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(expected[path]), r.headers["content-type"]
        assert len(r.content) > 1000
    r = await client.get("/ui/../pyproject.toml")
    assert r.status_code == 404
    r = await client.get("/ui/secrets.txt")
    assert r.status_code == 404 and "dashboard" in r.json()["detail"]


async def test_history_needs_the_admin_scope(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """The history is admin data: no key → 401, a decide key → 403, unknown experiment → 404."""
    await _running(client, keys, "hist")
    assert (await client.get("/v1/experiments/hist/history")).status_code == 401
    r = await client.get("/v1/experiments/hist/history", headers=auth(keys["decide"]))
    assert r.status_code == 403
    r = await client.get("/v1/experiments/nope/history", headers=auth(keys["admin"]))
    assert r.status_code == 404 and "nope" in r.json()["detail"]


async def test_history_records_the_falling_sequential_p_value(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """Each evaluation's merged sequential p-value lands in the history when it fell: the
    series starts at the first evaluation, never increases, ends at the value `/results`
    reports, and a repeated evaluation with no new data adds no point."""
    h = auth(keys["admin"])
    body = {"metrics": [
        {"name": "reward", "type": "binary", "direction": "maximize"},
        {"name": "latency", "type": "continuous", "direction": "minimize",
         "max_degradation": 50.0},
    ]}
    await _running(client, keys, "hist", **body)
    r = await client.get("/v1/experiments/hist/history", headers=h)
    assert r.status_code == 200 and r.json()["sequential"] == []  # nothing evaluated yet
    total = 0
    for round_ in range(3):
        await _traffic(client, keys, "hist", range(total, total + 400),
                       rate={"arm0": 0.1, "arm1": 0.4})
        total += 400
        await _counted(db, "hist", total)
        r = await client.get("/v1/experiments/hist/results", headers=h)
        assert r.status_code == 200, r.text
        if round_ == 0:
            first = r.json()
    last = r.json()
    hist = (await client.get("/v1/experiments/hist/history", headers=h)).json()
    assert abs(hist["alpha"] - 0.05) < 1e-12
    series = {(s["metric"], s["kind"], s["arm"]): s for s in hist["sequential"]}
    assert set(series) == {("reward", "two_sided", "arm1"), ("latency", "guardrail", "arm1")}
    primary = series[("reward", "two_sided", "arm1")]
    assert primary["vs"] == "arm0"
    points = [p["p_value"] for p in primary["points"]]
    assert points[0] == first["comparisons"][0]["sequential_p_value"]
    assert points[-1] == last["comparisons"][0]["sequential_p_value"] < 0.05
    assert all(b < a for a, b in itertools.pairwise(points))
    assert [p["exposures"] for p in primary["points"]] == sorted(
        p["exposures"] for p in primary["points"]
    )
    # the guardrail saw no latency values: its p-value stays 1 and is recorded once
    assert [p["p_value"] for p in series[("latency", "guardrail", "arm1")]["points"]] == [1.0]
    before = await db.fetchval("SELECT count(*) FROM sequential_history")
    for _ in range(3):
        assert (await client.get("/v1/experiments/hist/results", headers=h)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM sequential_history") == before
