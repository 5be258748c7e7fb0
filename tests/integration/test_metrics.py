"""`GET /metrics`: every family present with sane values after real traffic."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from croupier.app import create_app
from croupier.settings import Settings
from tests.integration.helpers import auth, experiment_body

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def _scrape(client: AsyncTestClient[Any]) -> Samples:
    """Scrape without a key and index the samples by sample name."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the one sample of `name` whose labels include `labels`."""
    found = [v for lab, v in samples[name] if labels.items() <= lab.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


async def _start_experiment(client: AsyncTestClient[Any], keys: dict[str, str], key: str) -> None:
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(key=key), headers=h)
    assert r.status_code == 201, r.text
    assert (await client.post(f"/v1/experiments/{key}/start", headers=h)).status_code == 200


async def _decide(client: AsyncTestClient[Any], key: str, experiment: str, unit: str) -> Any:
    r = await client.post(
        "/v1/decide", json={"experiment": experiment, "unit_id": unit}, headers=auth(key)
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_family_after_traffic(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """After decisions and accepted, duplicate and rejected rewards, each family is scraped
    without a key and counts exactly what happened."""
    await _start_experiment(client, keys, "exp")
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(key="draft"), headers=h)
    assert r.status_code == 201, r.text
    decide = keys["decide"]
    decisions = [await _decide(client, decide, "exp", f"u{i}") for i in range(20)]
    drafts = [await _decide(client, decide, "draft", f"u{i}") for i in range(3)]
    assert {d["reason"] for d in drafts} == {"draft"}

    dh = auth(decide)
    for d in decisions[:5]:
        r = await client.post("/v1/rewards", json={"decision_id": d["decision_id"], "value": 1},
                              headers=dh)
        assert r.status_code == 202, r.text
    dup = [{"decision_id": d["decision_id"], "value": 1} for d in decisions[:2]]
    assert (await client.post("/v1/rewards", json=dup, headers=dh)).json()["duplicates"] == 2
    bad = [{"decision_id": decisions[6]["decision_id"], "value": 1},
           {"decision_id": decisions[7]["decision_id"], "value": 0.5},
           {"decision_id": decisions[8]["decision_id"], "value": 1}]
    assert (await client.post("/v1/rewards", json=bad, headers=dh)).status_code == 422
    r = await client.post("/v1/rewards", content=b"{not json", headers=dh)
    assert r.status_code == 400

    deadline = time.monotonic() + 5
    while True:  # the subscriber connects and the write-behind log drains in the background
        s = await _scrape(client)
        ready = (_value(s, "croupier_redis_connected") == 1
                 and _value(s, "croupier_decision_log_queue_depth") == 0)
        if ready or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    by_arm = {lab["arm"]: v for lab, v in s["croupier_decisions_total"]
              if lab["experiment"] == "exp" and lab["reason"] == "allocated"}
    assert sum(by_arm.values()) == 20 and set(by_arm) <= {"arm0", "arm1"}
    assert _value(s, "croupier_decisions_total", experiment="draft", arm="arm0",
                  reason="draft") == 3
    assert _value(s, "croupier_rewards_total", outcome="accepted") == 5
    assert _value(s, "croupier_rewards_total", outcome="duplicate") == 2
    assert _value(s, "croupier_rewards_total", outcome="rejected") == 4  # 3 items + 1 body
    assert _value(s, "croupier_reward_commit_seconds_count") == 6  # one per committed request
    assert 0 < _value(s, "croupier_reward_commit_seconds_sum") < 6 * 5.0
    buckets = [v for _, v in s["croupier_reward_commit_seconds_bucket"]]
    assert buckets == sorted(buckets) and buckets[-1] == 6
    assert _value(s, "croupier_reward_commit_seconds_bucket", le="+Inf") == 6
    # the requests were sent one after the other: each was a group of its own
    assert _value(s, "croupier_reward_group_commits_total") == 6
    assert _value(s, "croupier_reward_group_commit_items_total") == 7
    assert _value(s, "croupier_decision_log_queue_depth") == 0
    assert _value(s, "croupier_decision_log_dropped_total") == 0
    assert _value(s, "croupier_experiments_loaded") == 2
    assert _value(s, "croupier_redis_connected") == 1
    assert 0 <= _value(s, "croupier_snapshot_age_seconds") < 5
    assert "croupier_optimizer_leader" not in s  # optimizer disabled: family omitted
    assert _value(s, "process_resident_memory_bytes") > 0  # the standard process collector


async def test_queue_depth_and_drops_while_writes_wait(
    settings: Settings, keys: dict[str, str]
) -> None:
    """With a 5-event buffer and a slow writer, 8 decisions show depth 5 and 3 drops."""
    slow = dataclasses.replace(settings, decision_buffer_max=5, flush_interval_ms=60_000)
    async with AsyncTestClient(app=create_app(slow)) as client:
        await _start_experiment(client, keys, "exp")
        for i in range(8):
            await _decide(client, keys["decide"], "exp", f"u{i}")
        s = await _scrape(client)
        assert _value(s, "croupier_decision_log_queue_depth") == 5
        assert _value(s, "croupier_decision_log_dropped_total") == 3
        total = sum(v for _, v in s["croupier_decisions_total"])
        assert total == 8  # served decisions are counted even when their log entry is dropped


async def test_optimizer_leader_and_cycle_time(
    settings: Settings, keys: dict[str, str]
) -> None:
    """With the optimizer on, the process reports itself leader and its last cycle's duration."""
    with_optimizer = dataclasses.replace(settings, optimizer_enabled=True, optimizer_interval_s=0.1)
    async with AsyncTestClient(app=create_app(with_optimizer)) as client:
        await _start_experiment(client, keys, "exp")
        deadline = time.monotonic() + 10
        while True:
            s = await _scrape(client)
            if "croupier_optimizer_cycle_seconds" in s or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert _value(s, "croupier_optimizer_leader") == 1
        assert 0 <= _value(s, "croupier_optimizer_cycle_seconds") < 10
        assert _value(s, "croupier_optimizer_cycles_total") >= 1
