"""Reward ingestion: attribution, idempotency, conflicts, whole-list rejection, statistics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from croupier.app import create_app
from croupier.settings import Settings
from tests.integration.helpers import auth, experiment_body


async def _setup(client: AsyncTestClient[Any], keys: dict[str, str], **more: Any) -> None:
    h = auth(keys["admin"])
    metrics = [
        {"name": "reward", "type": "binary", "direction": "maximize"},
        {
            "name": "latency",
            "type": "continuous",
            "direction": "minimize",
            "max_relative_degradation": 0.2,
        },
    ]
    r = await client.post(
        "/v1/experiments", json=experiment_body(metrics=metrics, **more), headers=h
    )
    assert r.status_code == 201, r.text
    assert (await client.post("/v1/experiments/exp/start", headers=h)).status_code == 200


async def _decide(client: AsyncTestClient[Any], key: str, unit: str) -> dict[str, Any]:
    r = await client.post(
        "/v1/decide", json={"experiment": "exp", "unit_id": unit}, headers=auth(key)
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_duplicates_are_idempotent_and_conflicts_refused(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """The same value again is a duplicate; a different value is a 409 that writes nothing."""
    await _setup(client, keys)
    h = auth(keys["decide"])
    d = await _decide(client, keys["decide"], "u1")
    item = {"decision_id": d["decision_id"], "value": 1}
    r = await client.post("/v1/rewards", json=item, headers=h)
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "duplicates": 0})
    r = await client.post("/v1/rewards", json=[item, item], headers=h)
    assert (r.status_code, r.json()) == (202, {"accepted": 0, "duplicates": 2})
    d2 = await _decide(client, keys["decide"], "u2")
    r = await client.post(
        "/v1/rewards",
        json=[
            {"decision_id": d2["decision_id"], "value": 1},
            {"decision_id": d["decision_id"], "value": 0},
        ],
        headers=h,
    )
    assert r.status_code == 409, r.text
    assert r.json()["extra"][0]["index"] == 1
    assert await db.fetchval("SELECT count(*) FROM rewards") == 1
    assert await db.fetchval("SELECT sum(n) FROM metric_stats WHERE metric = 'reward'") == 1


async def test_whole_list_is_validated_first(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """One bad item (index and field named) rejects the list; nothing is written."""
    await _setup(client, keys)
    h = auth(keys["decide"])
    d = await _decide(client, keys["decide"], "u1")
    good = {"decision_id": d["decision_id"], "value": 1}
    cases = [
        ({"decision_id": d["decision_id"], "value": 0.5}, "value"),
        ({"decision_id": d["decision_id"], "value": 2, "metric": "nope"}, "metric"),
        ({"decision_id": "A" * 32, "value": 1}, "decision_id"),
        ({"decision_id": d["decision_id"], "value": "1"}, "value"),
        ({"decision_id": d["decision_id"]}, ""),
        ({"decision_id": d["decision_id"], "value": 1, "extra": 1}, ""),
        ({"decision_id": d["decision_id"], "value": "INF", "metric": "latency"}, "value"),
    ]
    for bad, field in cases:
        # JSON has no infinity; 1e400 is how a client sends one (it overflows to inf)
        raw = json.dumps([good, bad]).replace('"INF"', "1e400")
        r = await client.post("/v1/rewards", content=raw, headers=h)
        assert r.status_code == 422, (bad, r.text)
        extra = r.json()["extra"][0]
        assert extra["index"] == 1, r.json()
        if field:
            assert extra["field"] == field, r.json()
    assert await db.fetchval("SELECT count(*) FROM rewards") == 0


async def test_continuous_metric_and_uncounted_decisions(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """Continuous rewards accumulate count/sum/sum_sq; rewards of uncounted decisions are kept
    but left out of every statistic."""
    await _setup(client, keys, targeting=[{"attribute": "country", "op": "eq", "value": "US"}])
    h = auth(keys["decide"])
    r = await client.post(
        "/v1/decide",
        json={"experiment": "exp", "unit_id": "u1", "context": {"country": "US"}},
        headers=h,
    )
    counted = r.json()
    r = await client.post(
        "/v1/decide",
        json={"experiment": "exp", "unit_id": "u2", "context": {"country": "FR"}},
        headers=h,
    )
    excluded = r.json()
    assert excluded["reason"] == "excluded"
    items = [
        {"decision_id": counted["decision_id"], "value": 120.0, "metric": "latency"},
        {"decision_id": counted["decision_id"], "value": 1},
        {"decision_id": excluded["decision_id"], "value": 80.0, "metric": "latency"},
        {"decision_id": excluded["decision_id"], "value": 1},
    ]
    r = await client.post("/v1/rewards", json=items, headers=h)
    assert r.json() == {"accepted": 4, "duplicates": 0}
    assert await db.fetchval("SELECT count(*) FROM rewards") == 4
    row = await db.fetchrow(
        "SELECT sum(n) n, sum(sum) s, sum(sum_sq) q FROM metric_stats WHERE metric = 'latency'"
    )
    assert (row["n"], row["s"], row["q"]) == (1, 120.0, 14400.0)


async def test_reward_posted_to_another_process_right_after_decision(
    client: AsyncTestClient[Any], keys: dict[str, str], settings: Settings, db: asyncpg.Connection
) -> None:
    """A reward sent to a second server process milliseconds after the decision is attributed
    to the right arm, before the decision row is written."""
    await _setup(client, keys)
    slow = settings.replace(flush_interval_ms=5000)  # the deciding process writes late
    async with (
        AsyncTestClient(app=create_app(slow)) as a,
        AsyncTestClient(app=create_app(settings)) as b,
    ):
        r = await a.post(
            "/v1/decide",
            json={"experiment": "exp", "unit_id": "fast"},
            headers=auth(keys["decide"]),
        )
        d = r.json()
        r = await b.post(
            "/v1/rewards",
            json={"decision_id": d["decision_id"], "value": 1},
            headers=auth(keys["decide"]),
        )
        assert r.status_code == 202, r.text
        assert await db.fetchval("SELECT count(*) FROM decisions") == 0
        arm_index = int(d["arm"].removeprefix("arm"))
        row = await db.fetchrow("SELECT arm_index, value FROM rewards")
        assert (row["arm_index"], row["value"]) == (arm_index, 1.0)
    # the deciding process flushed on shutdown
    assert await db.fetchval("SELECT count(*) FROM decisions") == 1


async def test_racing_duplicate_rewards_count_once(
    client: AsyncTestClient[Any], keys: dict[str, str], settings: Settings, db: asyncpg.Connection
) -> None:
    """Concurrent identical rewards through two processes are stored and counted once."""
    await _setup(client, keys)
    d = await _decide(client, keys["decide"], "u1")
    h = auth(keys["decide"])
    async with AsyncTestClient(app=create_app(settings)) as other:
        item = {"decision_id": d["decision_id"], "value": 1}
        responses = await asyncio.gather(
            *[
                (client if i % 2 else other).post("/v1/rewards", json=item, headers=h)
                for i in range(20)
            ]
        )
    assert all(r.status_code == 202 for r in responses)
    assert sum(r.json()["accepted"] for r in responses) == 1
    assert sum(r.json()["duplicates"] for r in responses) == 19
    assert await db.fetchval("SELECT sum(n) FROM metric_stats WHERE metric = 'reward'") == 1
