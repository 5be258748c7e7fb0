"""Races on two live processes: one arm per sticky unit, duplicate rewards counted once, and
concurrent lifecycle transitions ending in one consistent, audited state."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest

from tests.faults.conftest import (
    Cluster,
    bearer,
    create_running,
    experiment,
    http,
    stats_equal_recount,
    wait_for,
)

pytestmark = pytest.mark.slow

RACERS = 40


async def test_races_on_two_processes(cluster: Cluster) -> None:
    """40 concurrent clients on two processes: a sticky unit (fixed and sticky thompson) gets one
    arm and one decision id; racing identical rewards are stored and counted once, racing
    conflicting values leave exactly one; racing start/pause/resume/stop end in one state whose
    audit trail replays without an impossible step; no 5xx anywhere."""
    c = cluster
    a, b = c.server("a"), c.server("b")
    async with http(a.url) as ca, http(b.url) as cb:
        clients = (ca, cb)
        dk = bearer(c.decide_key)
        await create_running(ca, c.admin_key, experiment("fs", "fixed", arms=4))
        await create_running(ca, c.admin_key, experiment("ts", "thompson", arms=4, sticky=True))
        for exp in ("fs", "ts"):
            await wait_for(lambda e=exp: _serves(cb, c.decide_key, e), timeout_s=2)

        # 1. sticky units: everyone racing for a fresh unit gets the same arm and decision id
        sticky_report = {}
        for exp in ("fs", "ts"):
            for unit in range(5):
                unit_id = f"race-{exp}-{unit}"
                rs = await asyncio.gather(
                    *(
                        clients[i % 2].post(
                            "/v1/decide",
                            json={"experiment": exp, "unit_id": unit_id},
                            headers=dk,
                        )
                        for i in range(RACERS)
                    )
                )
                assert {r.status_code for r in rs} == {200}, [r.text for r in rs][:3]
                answers = {(r.json()["arm"], r.json()["decision_id"]) for r in rs}
                assert len(answers) == 1, (exp, answers)
                sticky_report[unit_id] = Counter(r.json()["reason"] for r in rs)

        # 2. duplicate rewards racing on both processes are stored and counted once
        decisions = []
        for i in range(20):
            r = await ca.post(
                "/v1/decide", json={"experiment": "fs", "unit_id": f"dup-{i}"}, headers=dk
            )
            decisions.append(r.json()["decision_id"])
        await asyncio.sleep(0.3)  # let the decision log flush (exposures before rewards)
        bodies = [{"decision_id": d, "value": 1} for d in decisions for _ in range(10)]
        random.shuffle(bodies)
        rs = await asyncio.gather(
            *(
                clients[i % 2].post("/v1/rewards", json=body, headers=dk)
                for i, body in enumerate(bodies)
            )
        )
        assert {r.status_code for r in rs} == {202}, [r.text for r in rs if r.status_code != 202]
        assert sum(r.json()["accepted"] for r in rs) == len(decisions)
        assert sum(r.json()["duplicates"] for r in rs) == len(bodies) - len(decisions)

        # conflicting values racing: one value wins, every other request is a 409
        conflicting = []
        for i in range(10):
            r = await cb.post(
                "/v1/decide", json={"experiment": "fs", "unit_id": f"conflict-{i}"}, headers=dk
            )
            conflicting.append(r.json()["decision_id"])
        bodies = [{"decision_id": d, "value": v} for d in conflicting for v in (0, 1, 0, 1, 1, 0)]
        rs = await asyncio.gather(
            *(
                clients[i % 2].post("/v1/rewards", json=body, headers=dk)
                for i, body in enumerate(bodies)
            )
        )
        assert {r.status_code for r in rs} <= {202, 409}, [r.text for r in rs]
        stored = {
            r["decision_id"]: r["value"]
            for r in await c.fetch(
                "SELECT decision_id, value FROM rewards WHERE decision_id = ANY($1::text[])",
                conflicting + decisions,
            )
        }
        for body, r in zip(bodies, rs, strict=True):
            won = stored[str(body["decision_id"])] == body["value"]
            assert r.status_code == (202 if won else 409), (body, r.text)
        assert len(stored) == len(conflicting) + len(decisions)

        # 3. lifecycle transitions racing on both processes
        r = await ca.post("/v1/experiments", json=experiment("lc"), headers=bearer(c.admin_key))
        assert r.status_code == 201, r.text
        actions = ["start", "pause", "resume", "pause", "resume", "start", "stop"]
        rs = await asyncio.gather(
            *(
                _lifecycle(clients[i % 2], c.admin_key, random.Random(i), actions)
                for i in range(RACERS)
            )
        )
        statuses = Counter(s for per_client in rs for s, _ in per_client)
        assert set(statuses) <= {200, 409}, statuses
        ok = [action for per_client in rs for s, action in per_client if s == 200]

        audit = (
            await ca.get("/v1/audit", params={"experiment": "lc"}, headers=bearer(c.admin_key))
        ).json()
        steps = [e for e in sorted(audit, key=lambda e: e["id"]) if e["action"] != "create"]
        state = "draft"
        for step in steps:
            assert step["details"]["from"] == state, (state, step)
            state = step["details"]["to"]
        assert len(steps) == len(ok) and Counter(s["action"] for s in steps) == Counter(ok)
        for client in clients:  # both processes and the database agree on the final state
            r = await client.get("/v1/experiments/lc", headers=bearer(c.admin_key))
            assert r.json()["status"] == state
        expect = {"running": "allocated", "paused": "paused", "completed": "completed"}[state]
        for client in clients:
            await wait_for(lambda cl=client: _reason_is(cl, c.decide_key, expect), timeout_s=1.0)

        await asyncio.sleep(0.3)
    for exp in ("fs", "ts"):
        await stats_equal_recount(c, exp)
    # each raced sticky unit is one stored decision, one exposure
    rows = await c.fetch(
        "SELECT unit_id, count(*) n FROM decisions WHERE unit_id LIKE 'race-%' GROUP BY 1"
    )
    assert len(rows) == 10 and all(r["n"] == 1 for r in rows)
    print(
        f"\n[concurrency] {RACERS} racers x 10 sticky units; reasons per unit e.g. "
        f"{dict(next(iter(sticky_report.values())))}; 200 identical rewards -> "
        f"{len(decisions)} stored; 60 conflicting -> {len(conflicting)} stored; lifecycle: "
        f"{sum(statuses.values())} requests {dict(statuses)}, {len(steps)} audited steps, "
        f"final {state}"
    )


async def _lifecycle(
    client: httpx.AsyncClient, admin: str, rng: random.Random, actions: list[str]
) -> list[tuple[int, str]]:
    out = []
    for round_ in range(6):  # `stop` (terminal) only in the last round
        action = rng.choice(actions if round_ == 5 else [a for a in actions if a != "stop"])
        r = await client.post(f"/v1/experiments/lc/{action}", headers=bearer(admin))
        out.append((r.status_code, action))
    return out


async def _serves(client: httpx.AsyncClient, key: str, exp: str) -> bool:
    r = await client.post(
        "/v1/decide", json={"experiment": exp, "unit_id": "probe"}, headers=bearer(key)
    )
    return r.status_code == 200 and r.json()["reason"] in ("allocated", "sticky")


async def _reason_is(client: httpx.AsyncClient, key: str, expect: str) -> bool:
    r = await client.post(
        "/v1/decide", json={"experiment": "lc", "unit_id": "probe"}, headers=bearer(key)
    )
    return r.status_code == 200 and r.json()["reason"] in (
        (expect, "sticky") if expect == "allocated" else (expect,)
    )
