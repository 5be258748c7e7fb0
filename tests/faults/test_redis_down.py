"""Redis dies under load: decisions and rewards go on, changes travel through PostgreSQL
polling, and when Redis returns pub/sub resumes without restarting Croupier."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
import redis.asyncio as aioredis

from croupier.storage.redis_keys import RedisKeys
from tests.faults.conftest import (
    Cluster,
    Load,
    bearer,
    create_running,
    experiment,
    http,
    stats_equal_recount,
    wait_for,
)

pytestmark = pytest.mark.slow

EXPERIMENTS = ("fx", "ts", "nt")


async def _reason(client: httpx.AsyncClient, key: str, exp: str) -> str:
    r = await client.post(
        "/v1/decide",
        json={"experiment": exp, "unit_id": f"probe-{random.random()}"},
        headers=bearer(key),
    )
    return str(r.json().get("reason")) if r.status_code == 200 else f"http {r.status_code}"


async def _readiness(client: httpx.AsyncClient) -> dict[str, object]:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text  # degraded is still ready to serve decisions
    return r.json()  # type: ignore[no-any-return]


async def test_redis_dies_under_load(cluster: Cluster) -> None:
    """With Redis killed mid-load on two processes: zero failed decisions or rewards; a change
    made on A reaches B by polling within 1 s; Redis back on the same port → both ready again,
    resubscribed and publishing, with no restart of Croupier."""
    c = cluster
    a, b = c.server("a"), c.server("b")
    channel = RedisKeys("faults").policy_channel
    report: dict[str, object] = {}
    async with http(a.url) as ca, http(b.url) as cb:
        await create_running(ca, c.admin_key, experiment("fx", "fixed"))
        await create_running(ca, c.admin_key, experiment("ts", "thompson", sticky=True))
        await create_running(ca, c.admin_key, experiment("nt", "thompson", arms=3))
        for exp in EXPERIMENTS:
            await wait_for(lambda e=exp: _allocated(cb, c.decide_key, e), timeout_s=2)

        load = Load(clients=32, duration_s=7.0, max_requests=30_000)
        decision_errors: list[str] = []
        reward_errors: list[str] = []
        served: list[str] = []
        acked: dict[str, float] = {}

        async def client_loop(i: int) -> None:
            client = ca if i % 2 else cb
            n = 0
            while load.more():
                n += 1
                exp = EXPERIMENTS[(i + n) % len(EXPERIMENTS)]
                try:
                    r = await client.post(
                        "/v1/decide",
                        json={"experiment": exp, "unit_id": f"c{i}-{n}"},
                        headers=bearer(c.decide_key),
                    )
                except httpx.HTTPError as exc:
                    decision_errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    decision_errors.append(f"{r.status_code} {r.text}")
                    continue
                d = r.json()
                served.append(d["decision_id"])
                if n % 2 or not load.more():
                    continue
                value = float(random.random() < 0.3)
                try:
                    r = await client.post(
                        "/v1/rewards",
                        json={"decision_id": d["decision_id"], "value": value},
                        headers=bearer(c.decide_key),
                    )
                except httpx.HTTPError as exc:
                    reward_errors.append(repr(exc))
                    continue
                if r.status_code == 202:
                    acked[d["decision_id"]] = value
                else:
                    reward_errors.append(f"{r.status_code} {r.text}")

        async def faults() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(c.redis.kill)
            killed = time.monotonic()
            for client in (ca, cb):
                await wait_for(lambda cl=client: _degraded(cl), timeout_s=3, interval_s=0.05)
            report["degraded_after_s"] = round(time.monotonic() - killed, 2)
            # a lifecycle change on A reaches B through PostgreSQL polling alone
            for action, expect in (("pause", "paused"), ("resume", "allocated")):
                r = await ca.post(f"/v1/experiments/fx/{action}", headers=bearer(c.admin_key))
                assert r.status_code == 200, r.text
                took = await wait_for(
                    lambda ex=expect: _reason_is(cb, c.decide_key, "fx", ex), timeout_s=1.0
                )
                report[f"{action}_propagation_without_redis_s"] = round(took, 3)
            await asyncio.sleep(max(0.0, killed + 2.5 - time.monotonic()))
            await asyncio.to_thread(c.redis.start)  # same port, empty
            back = time.monotonic()
            for client in (ca, cb):
                await wait_for(lambda cl=client: _ready(cl), timeout_s=10, interval_s=0.1)
            report["ready_again_after_s"] = round(time.monotonic() - back, 2)
            r_client = aioredis.from_url(c.redis.url)
            try:

                async def resubscribed() -> bool:
                    counts = await r_client.pubsub_numsub(channel)
                    return int(counts[0][1]) == 2

                await wait_for(resubscribed, timeout_s=10, interval_s=0.1)
                report["resubscribed_after_s"] = round(time.monotonic() - back, 2)
                # a change made on B now reaches A, and is published to Redis again
                r = await cb.post("/v1/experiments/nt/pause", headers=bearer(c.admin_key))
                assert r.status_code == 200, r.text
                took = await wait_for(
                    lambda: _reason_is(ca, c.decide_key, "nt", "paused"), timeout_s=1.0
                )
                report["propagation_after_redis_back_s"] = round(took, 3)
                assert await r_client.exists(RedisKeys("faults").policy("nt")) == 1
                r = await cb.post("/v1/experiments/nt/resume", headers=bearer(c.admin_key))
                assert r.status_code == 200, r.text
            finally:
                await r_client.aclose()

        await asyncio.gather(load.run(client_loop), faults())

    assert decision_errors == [], decision_errors[:5]
    assert reward_errors == [], reward_errors[:5]
    # every acknowledged reward is stored with its value; every decision reaches the log
    rows = await c.fetch("SELECT decision_id, value FROM rewards")
    stored = {r["decision_id"]: r["value"] for r in rows}
    assert stored == acked

    async def all_logged() -> bool:
        n = await c.fetchval(
            "SELECT count(*) FROM decisions WHERE decision_id = ANY($1::text[])", served
        )
        return int(n) == len(set(served))

    await wait_for(all_logged, timeout_s=5, interval_s=0.2)
    for exp in EXPERIMENTS:
        await stats_equal_recount(c, exp)
    print(
        f"\n[redis-down] load: {load.summary()}; decisions {len(served)}, rewards acked "
        f"{len(acked)}; {report}"
    )


async def _allocated(client: httpx.AsyncClient, key: str, exp: str) -> bool:
    return await _reason(client, key, exp) in ("allocated", "sticky")


async def _reason_is(client: httpx.AsyncClient, key: str, exp: str, expect: str) -> bool:
    return await _reason(client, key, exp) == expect


async def _degraded(client: httpx.AsyncClient) -> bool:
    ready = await _readiness(client)
    return ready["status"] == "degraded" and str(ready["redis"]).startswith("unavailable")


async def _ready(client: httpx.AsyncClient) -> bool:
    ready = await _readiness(client)
    return ready["status"] == "ready"
