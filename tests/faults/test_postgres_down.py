"""PostgreSQL dies (kill -9 of the postmaster and every backend) under load: decisions go on,
rewards are refused with 503 + Retry-After and nothing partial, every acknowledged reward
survives, and the decision-log buffer stays within its bound with a counted, logged loss."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx
import pytest

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

SMALL_BUFFER = 50


@dataclass
class Ledger:
    """What the clients saw: every decision served and every reward request's fate."""

    served: dict[str, list[str]] = field(default_factory=lambda: {"a": [], "b": []})
    decision_errors: list[str] = field(default_factory=list)
    acked: dict[str, float] = field(default_factory=dict)
    # requests whose last answer was not a 2xx: their items must be all stored or none
    unacked: list[list[tuple[str, float]]] = field(default_factory=list)
    refusals: int = 0
    bad_refusals: list[str] = field(default_factory=list)
    retried_ok: int = 0
    reward_requests: int = 0


async def test_postgres_dies_under_load(cluster: Cluster) -> None:
    """kill -9 of PostgreSQL for ~2.5 s under a 32-client load on two processes: zero failed
    decisions; rewards 503 + Retry-After (never a 5xx other than 503); after the restart the
    retried rewards succeed, every 2xx reward is stored with its value, refused requests are all
    or nothing, decisions buffered on A are all written and B's small buffer dropped (counted,
    logged) exactly what is missing."""
    c = cluster
    a = c.server("a")
    b = c.server("b", CROUPIER_DECISION_BUFFER_MAX=str(SMALL_BUFFER))
    led = Ledger()
    report: dict[str, object] = {}
    load = Load(clients=32, duration_s=7.0, max_requests=30_000)
    retry_deadline = time.monotonic() + 25.0
    async with http(a.url) as ca, http(b.url) as cb:
        await create_running(ca, c.admin_key, experiment("fx", "fixed", sticky=False))
        await wait_for(lambda: _serves(cb, c.decide_key), timeout_s=2)

        async def send_rewards(client: httpx.AsyncClient, items: list[tuple[str, float]]) -> None:
            body = [{"decision_id": d, "value": v} for d, v in items]
            first = True
            while time.monotonic() < retry_deadline:
                led.reward_requests += 1
                try:
                    r = await client.post("/v1/rewards", json=body, headers=bearer(c.decide_key))
                except httpx.HTTPError as exc:
                    led.bad_refusals.append(repr(exc))
                    return
                if r.status_code == 202:
                    for d, v in items:
                        led.acked[d] = v
                    led.retried_ok += 0 if first else 1
                    return
                if r.status_code != 503 or "retry-after" not in r.headers:
                    led.bad_refusals.append(f"{r.status_code} {dict(r.headers)} {r.text}")
                    led.unacked.append(items)
                    return
                led.refusals += 1
                first = False
                # honour Retry-After (capped so the test stays short)
                await asyncio.sleep(min(float(r.headers["retry-after"]), 0.3))
            led.unacked.append(items)

        sending: set[asyncio.Task[None]] = set()

        def send_later(client: httpx.AsyncClient, items: list[tuple[str, float]]) -> None:
            # retries go on in the background: a client keeps deciding meanwhile
            task = asyncio.create_task(send_rewards(client, items))
            sending.add(task)
            task.add_done_callback(sending.discard)

        async def client_loop(i: int) -> None:
            name, client = ("a", ca) if i % 2 else ("b", cb)
            pending: list[tuple[str, float]] = []
            n = 0
            while load.more():
                n += 1
                try:
                    r = await client.post(
                        "/v1/decide",
                        json={"experiment": "fx", "unit_id": f"{name}{i}-{n}"},
                        headers=bearer(c.decide_key),
                    )
                except httpx.HTTPError as exc:
                    led.decision_errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    led.decision_errors.append(f"{r.status_code} {r.text}")
                    continue
                decision_id = r.json()["decision_id"]
                led.served[name].append(decision_id)
                pending.append((decision_id, float(random.random() < 0.4)))
                if len(pending) == 4:
                    send_later(client, pending)
                    pending = []
            if pending:
                send_later(client, pending)

        async def faults() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(c.pg.kill)
            down = time.monotonic()
            ready = await _readyz(ca)
            report["readyz_a_while_down"] = {k: ready[k] for k in ("status", "postgres")}
            assert ready["status"] == "degraded" and ready["postgres"] != "ok"
            # admin requests need PostgreSQL: a 503 with Retry-After, never a 500
            r = await ca.get("/v1/experiments", headers=bearer(c.admin_key))
            report["admin_get_while_down"] = (r.status_code, r.headers.get("retry-after"))
            assert r.status_code == 503 and r.headers.get("retry-after"), r.text

            async def b_dropping() -> bool:
                r = await _readyz(cb)
                assert r["decision_buffer"] <= SMALL_BUFFER  # bounded, whatever the load
                return r["decisions_dropped"] > 0

            await wait_for(b_dropping, timeout_s=2.0, interval_s=0.05)
            await asyncio.sleep(max(0.0, down + 2.5 - time.monotonic()))
            await asyncio.to_thread(c.pg.restart_after_kill)
            report["postgres_down_s"] = round(time.monotonic() - down, 2)

        await asyncio.gather(load.run(client_loop), faults())
        while sending:  # bounded by retry_deadline
            await asyncio.gather(*list(sending))

        # after recovery: both buffers drain; nothing is left behind
        async def drained() -> bool:
            ra, rb = await _readyz(ca), await _readyz(cb)
            return (
                ra["status"] == "ready"
                and rb["status"] == "ready"
                and ra["decision_buffer"] == 0
                and rb["decision_buffer"] == 0
            )

        await wait_for(drained, timeout_s=15, interval_s=0.1)
        ra, rb = await _readyz(ca), await _readyz(cb)

    assert led.decision_errors == [], led.decision_errors[:5]
    assert led.bad_refusals == [], led.bad_refusals[:5]
    assert led.refusals > 0, "no reward was refused: the outage did not bite"
    assert led.retried_ok > 0, "no refused reward succeeded on retry"
    assert led.unacked == [], f"{len(led.unacked)} reward requests never succeeded"

    stored = {r["decision_id"]: r["value"] for r in await c.fetch("SELECT * FROM rewards")}
    missing = {d: v for d, v in led.acked.items() if stored.get(d) != v}
    assert missing == {}, f"{len(missing)} acknowledged rewards missing or wrong"
    assert len(stored) == len(led.acked)

    # decisions: A buffered through the outage and lost nothing; B dropped exactly what it counted
    assert ra["decisions_dropped"] == 0
    in_db = {
        name: int(
            await c.fetchval(
                "SELECT count(*) FROM decisions WHERE decision_id = ANY($1::text[])", ids
            )
        )
        for name, ids in led.served.items()
    }
    assert in_db["a"] == len(led.served["a"])
    dropped_b = int(rb["decisions_dropped"])
    assert dropped_b > 0 and in_db["b"] == len(led.served["b"]) - dropped_b
    assert "decisions dropped" in b.log_text(), b.log_text()[-3000:]
    await stats_equal_recount(c, "fx")
    print(
        f"\n[postgres-down] load: {load.summary()}; decisions a={len(led.served['a'])} "
        f"b={len(led.served['b'])}; reward requests {led.reward_requests} (503s {led.refusals}, "
        f"retried ok {led.retried_ok}); rewards acked {len(led.acked)}; decisions dropped on b "
        f"{dropped_b} (buffer max {SMALL_BUFFER}); {report}"
    )


async def _serves(client: httpx.AsyncClient, key: str) -> bool:
    r = await client.post(
        "/v1/decide", json={"experiment": "fx", "unit_id": "probe"}, headers=bearer(key)
    )
    return r.status_code == 200 and r.json()["reason"] == "allocated"


async def _readyz(client: httpx.AsyncClient) -> dict[str, object]:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]
