"""kill -9 of a Croupier server during a reward load: after the restart every acknowledged reward
is stored, the sufficient statistics equal a full recount, and the decisions lost are only those
of the last flush interval (plus the batch in flight)."""

from __future__ import annotations

import asyncio
import random
import time

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

pytestmark = [
    pytest.mark.slow,
    # connections to the killed server are abandoned by httpx, and collected later
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]

FLUSH_INTERVAL_MS = 50
# a lost decision was made at most one flush interval (plus the batch being written) before the
# kill; 1 s is a generous bound for that batch on a loaded CI machine
LOSS_WINDOW_S = FLUSH_INTERVAL_MS / 1000 + 1.0


async def test_kill_9_during_reward_load(cluster: Cluster) -> None:
    """SIGKILL of the server (and its workers) mid-load, restart on the same port, resend what got
    no answer: every 2xx reward is stored with its value, arm_stats/metric_stats equal a recount,
    and every lost decision was served within the loss window before the kill."""
    c = cluster
    a = c.server("a", CROUPIER_FLUSH_INTERVAL_MS=str(FLUSH_INTERVAL_MS))
    experiments = ("fx", "nt")
    served: dict[str, float] = {}  # decision_id -> monotonic time the client got it
    acked: dict[str, float] = {}
    unanswered: list[dict[str, object]] = []  # reward requests with no answer (server died)
    other_errors: list[str] = []
    down = {"killed_at": 0.0, "back_at": 0.0, "refused_while_down": 0}
    load = Load(clients=32, duration_s=7.0, max_requests=30_000)
    async with http(a.url) as ca:
        await create_running(ca, c.admin_key, experiment("fx", "fixed", sticky=False))
        await create_running(ca, c.admin_key, experiment("nt", "thompson", arms=3))

        async def post(path: str, body: object) -> httpx.Response | None:
            try:
                return await ca.post(path, json=body, headers=bearer(c.decide_key))
            except httpx.TransportError:
                down["refused_while_down"] += 1
                return None

        async def client_loop(i: int) -> None:
            n = 0
            while load.more():
                n += 1
                r = await post(
                    "/v1/decide", {"experiment": experiments[n % 2], "unit_id": f"u{i}-{n}"}
                )
                if r is None:
                    await asyncio.sleep(0.1)  # the server is down: back off a little
                    continue
                if r.status_code != 200:
                    other_errors.append(f"decide {r.status_code} {r.text}")
                    continue
                decision_id = r.json()["decision_id"]
                served[decision_id] = time.monotonic()
                body = {"decision_id": decision_id, "value": float(random.random() < 0.5)}
                r = await post("/v1/rewards", body)
                if r is None:
                    unanswered.append(body)
                elif r.status_code == 202:
                    acked[decision_id] = float(body["value"])  # type: ignore[arg-type]
                else:
                    other_errors.append(f"reward {r.status_code} {r.text}")

        async def kill_and_restart() -> None:
            await asyncio.sleep(2.0)
            down["killed_at"] = time.monotonic()
            await asyncio.to_thread(a.kill9)
            await asyncio.to_thread(a.start)
            down["back_at"] = time.monotonic()

        await asyncio.gather(load.run(client_loop), kill_and_restart())
        assert down["back_at"] > 0, "the server was not restarted within the load"

        # resend what got no answer: each is now stored (accepted) or already was (duplicate)
        for body in unanswered:
            r = await ca.post("/v1/rewards", json=body, headers=bearer(c.decide_key))
            assert r.status_code == 202, r.text
            acked[str(body["decision_id"])] = float(body["value"])  # type: ignore[arg-type]

        async def flushed() -> bool:
            return (await ca.get("/readyz")).json()["decision_buffer"] == 0

        await wait_for(flushed, timeout_s=5)

    assert other_errors == [], other_errors[:5]
    stored = {r["decision_id"]: r["value"] for r in await c.fetch("SELECT * FROM rewards")}
    assert {d: stored.get(d) for d in acked} == acked  # every acknowledged reward, its value
    for exp in experiments:
        await stats_equal_recount(c, exp)

    logged = {
        r["decision_id"]
        for r in await c.fetch(
            "SELECT decision_id FROM decisions WHERE decision_id = ANY($1::text[])", list(served)
        )
    }
    lost = {d: t for d, t in served.items() if d not in logged}
    killed_at = down["killed_at"]
    ages = sorted(killed_at - t for t in lost.values())
    assert all(age <= LOSS_WINDOW_S for age in ages), ages[-5:]
    print(
        f"\n[kill-9] load: {load.summary()}; decisions served {len(served)}, lost {len(lost)} "
        f"(oldest {max(ages, default=0) * 1000:.0f} ms before the kill); rewards acked "
        f"{len(acked)} ({len(unanswered)} resent after no answer); requests refused while down "
        f"{down['refused_while_down']}; restart took {down['back_at'] - killed_at:.1f} s"
    )
