"""What one optimizer cycle does to an experiment, cycle by cycle: stop and promotion, guardrail
rollback of one arm or of the whole experiment, the admin winning a race, webhooks and SRM."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest

from croupier.admin.schemas import ExperimentCreate
from croupier.optimizer.alerts import AlertSender
from croupier.optimizer.loop import Optimizer
from croupier.optimizer.publish import Change, apply_change, apply_changes
from croupier.runtime import Runtime
from croupier.settings import Settings
from tests.integration.helpers import experiment_body

Totals = list[tuple[int, float, float]]


@dataclass
class Harness:
    """A started runtime and an optimizer driven cycle by cycle (no loop task)."""

    runtime: Runtime
    optimizer: Optimizer
    db: asyncpg.Connection

    async def create(self, body: dict[str, Any], *, start: bool = True) -> int:
        """Create (and start) an experiment; returns its id."""
        service = self.runtime.experiments
        await service.create(msgspec.convert(body, ExperimentCreate), "test")
        if start:
            await service.transition(body["key"], "start", "test")
        return int(await self.db.fetchval("SELECT id FROM experiments WHERE key = $1", body["key"]))

    async def set_stats(self, experiment_id: int, exposures: list[int], **metrics: Totals) -> None:
        """Overwrite the sufficient statistics (exposures = expected exposures: no SRM)."""
        for i, n in enumerate(exposures):
            await self.db.execute(
                "UPDATE arm_stats SET exposures = $3::bigint, expected_exposures = $3::bigint "
                "WHERE experiment_id = $1 AND arm_index = $2",
                experiment_id, i, n,
            )
        for metric, per_arm in metrics.items():
            for i, (n, s, ss) in enumerate(per_arm):
                await self.db.execute(
                    "UPDATE metric_stats SET n = $4, sum = $5, sum_sq = $6 "
                    "WHERE experiment_id = $1 AND metric = $2 AND arm_index = $3",
                    experiment_id, metric, i, n, s, ss,
                )

    async def get(self, key: str) -> dict[str, Any]:
        """The experiment as GET returns it."""
        out = await self.runtime.experiments.get(key)
        return msgspec.to_builtins(out)  # type: ignore[no-any-return]

    async def audit(self, key: str) -> list[dict[str, Any]]:
        """Audit entries of one experiment, newest first."""
        rows = await self.runtime.experiments.audit_log(key, 100)
        return msgspec.to_builtins(rows)  # type: ignore[no-any-return]

    def decide_once(self, key: str, unit: str = "someone") -> dict[str, Any]:
        """One decision against this process's snapshot."""
        policy = self.runtime.cache.policies[key]
        out = self.runtime.decider.decide(policy, unit, None)
        assert out is not None
        return {"arm": out.arm, "reason": out.reason}


@pytest.fixture
async def harness(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[Harness]:
    """A runtime whose optimizer is driven by hand, one `run_cycle()` at a time."""
    rt = Runtime(settings)
    await rt.start()
    alerts = AlertSender(timeout_s=2.0, attempts=3, backoff_s=0.05)
    optimizer = Optimizer(
        settings, pool=rt.pool, redis=rt.redis, redis_keys=rt.redis_keys, cache=rt.cache,
        alerts=alerts, rng=np.random.default_rng(1),
    )
    alerts.start()
    try:
        yield Harness(rt, optimizer, db)
    finally:
        await alerts.stop()
        await rt.stop()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    fail_first: int = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server collecting webhook bodies; its first delivery attempt fails."""
    _Hook.received = []
    _Hook.fail_first = 1
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    finally:
        server.shutdown()
        server.server_close()


def _binary(rates: list[float], n: int) -> Totals:
    return [(round(n * r), float(round(n * r)), float(round(n * r))) for r in rates]


async def test_thompson_stop_promotes_the_winner(harness: Harness) -> None:
    """A clear thompson winner is stopped, recorded and served to everyone; the audit entry's
    actor is the optimizer."""
    eid = await harness.create(experiment_body(key="t", policy="thompson", arms=3))
    await harness.set_stats(eid, [5000] * 3, reward=_binary([0.05, 0.05, 0.09], 5000))
    report = await harness.optimizer.run_cycle()
    assert report.changes == 1 and report.failures == 0
    exp = await harness.get("t")
    assert (exp["status"], exp["winner"]) == ("completed", "arm2")
    assert exp["weights"] == {"arm0": 0.0, "arm1": 0.0, "arm2": 1.0}
    d = harness.decide_once("t")
    assert (d["arm"], d["reason"]) == ("arm2", "completed")
    audit = await harness.audit("t")
    assert (audit[0]["actor"], audit[0]["action"]) == ("optimizer", "stop")
    assert audit[0]["details"]["winner"] == "arm2"


async def test_without_auto_promote_the_control_is_served(harness: Harness) -> None:
    """With auto_promote off a stopped experiment serves the control; the best arm is named in
    the status reason but not recorded as the winner."""
    body = experiment_body(key="t", policy="thompson", arms=2, auto_promote=False)
    eid = await harness.create(body)
    await harness.set_stats(eid, [5000, 5000], reward=_binary([0.05, 0.09], 5000))
    await harness.optimizer.run_cycle()
    exp = await harness.get("t")
    assert (exp["status"], exp["winner"]) == ("completed", None)
    assert exp["weights"] == {"arm0": 1.0, "arm1": 0.0}
    assert "arm1 is best" in exp["status_reason"]
    assert (harness.decide_once("t"))["arm"] == "arm0"


async def test_without_auto_stop_thompson_keeps_reallocating(harness: Harness) -> None:
    """With auto_stop off a clear winner is not stopped; its weight grows by at most the cap."""
    body = experiment_body(key="t", policy="thompson", arms=2, auto_stop=False)
    eid = await harness.create(body)
    await harness.set_stats(eid, [5000, 5000], reward=_binary([0.05, 0.09], 5000))
    for _ in range(3):
        await harness.optimizer.run_cycle()
    exp = await harness.get("t")
    assert exp["status"] == "running"
    assert exp["weights"]["arm1"] == pytest.approx(0.5 + 3 * 0.1, abs=1e-9)


async def test_burn_in_and_small_changes_write_nothing(harness: Harness) -> None:
    """Before every arm has min_exposures_per_arm nothing is written; neither is a change
    below the minimum weight change."""
    eid = await harness.create(experiment_body(key="t", policy="thompson", arms=2))
    await harness.set_stats(
        eid, [99, 5000], reward=[_binary([0.05], 99)[0], _binary([0.09], 5000)[0]]
    )
    await harness.optimizer.run_cycle()
    await harness.set_stats(eid, [5000, 5000], reward=_binary([0.05, 0.05], 5000))
    # equal evidence: P(best) ≈ 0.5 each, so the equal split stays within the 0.001 threshold
    # (Monte Carlo error of P(best) with 10 000 draws is ≈ 0.005, so allow a rare small move)
    await harness.optimizer.run_cycle()
    rows = await harness.db.fetch(
        "SELECT reason FROM allocations WHERE experiment_id = $1 ORDER BY id", eid
    )
    assert [r["reason"] for r in rows][:1] == ["created"]
    assert len(rows) <= 2


async def test_guardrail_rollback_of_one_arm_then_of_the_experiment(
    harness: Harness, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """A fixed arm breaching a guardrail gets weight 0 (others share it equally) and stays
    disabled; when the last non-control arm breaches, the experiment is rolled back and every
    change is announced on the webhook (after a retry)."""
    url, received = webhook
    metrics = [
        {"name": "reward", "type": "binary", "direction": "maximize"},
        {"name": "errors", "type": "binary", "direction": "minimize", "max_degradation": 0.0},
    ]
    body = experiment_body(key="f", policy="fixed", arms=3, metrics=metrics, alerts_url=url)
    eid = await harness.create(body)
    n = 4000
    await harness.set_stats(
        eid, [n] * 3, reward=_binary([0.05, 0.05, 0.05], n), errors=_binary([0.02, 0.02, 0.06], n)
    )
    await harness.optimizer.run_cycle()
    exp = await harness.get("f")
    assert exp["status"] == "running"
    assert exp["weights"]["arm2"] == 0.0
    assert exp["weights"]["arm0"] == pytest.approx(0.5)
    assert exp["weights"]["arm1"] == pytest.approx(0.5)
    assert "arm2" in exp["status_reason"]
    await harness.optimizer.run_cycle()  # the breach is remembered: no second rollback row
    assert await harness.db.fetchval(
        "SELECT count(*) FROM allocations WHERE experiment_id = $1", eid
    ) == 2
    await harness.set_stats(
        eid, [n] * 3, reward=_binary([0.05, 0.05, 0.05], n), errors=_binary([0.02, 0.06, 0.06], n)
    )
    await harness.optimizer.run_cycle()
    exp = await harness.get("f")
    assert exp["status"] == "rolled_back"
    assert exp["weights"] == {"arm0": 1.0, "arm1": 0.0, "arm2": 0.0}
    assert (harness.decide_once("f"))["reason"] == "rolled_back"
    for _ in range(100):
        if len(received) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [(b["event"], b["experiment"]) for b in received] == [("rollback", "f")] * 2
    assert received[0]["arms"] == ["arm2"] and received[1]["status"] == "rolled_back"


async def test_thompson_keeps_a_rolled_back_arm_at_zero(harness: Harness) -> None:
    """After a guardrail rollback, thompson reallocates among the remaining arms only, with the
    floor applied among them."""
    metrics = [
        {"name": "reward", "type": "binary", "direction": "maximize"},
        {"name": "errors", "type": "binary", "direction": "minimize", "max_degradation": 0.0},
    ]
    body = experiment_body(key="t", policy="thompson", arms=3, metrics=metrics, auto_stop=False)
    eid = await harness.create(body)
    n = 4000
    await harness.set_stats(
        eid, [n] * 3, reward=_binary([0.05, 0.06, 0.09], n), errors=_binary([0.02, 0.02, 0.06], n)
    )
    await harness.optimizer.run_cycle()
    assert (await harness.get("t"))["weights"]["arm2"] == 0.0
    for _ in range(6):
        await harness.optimizer.run_cycle()
    weights = (await harness.get("t"))["weights"]
    assert weights["arm2"] == 0.0
    assert weights["arm1"] > weights["arm0"] >= 0.01 - 1e-12


async def test_admin_change_wins_a_race(harness: Harness) -> None:
    """A change computed before an admin paused the experiment (or before another allocation
    was written) is dropped without writing anything."""
    eid = await harness.create(experiment_body(key="t", policy="thompson", arms=2))
    alloc = await harness.db.fetchval(
        "SELECT max(id) FROM allocations WHERE experiment_id = $1", eid
    )
    change = Change(
        experiment_id=eid, key="t", kind="reallocate", based_on_allocation_id=alloc,
        weights=[0.2, 0.8], reason="test",
    )
    await harness.runtime.experiments.transition("t", "pause", "test")
    rt = harness.runtime
    assert not await apply_change(rt.pool, rt.redis, rt.redis_keys, change)
    await harness.runtime.experiments.transition("t", "resume", "test")
    stale = Change(
        experiment_id=eid, key="t", kind="reallocate", based_on_allocation_id=alloc - 1,
        weights=[0.2, 0.8], reason="test",
    )
    assert not await apply_change(rt.pool, rt.redis, rt.redis_keys, stale)
    assert await apply_change(rt.pool, rt.redis, rt.redis_keys, change, local=rt.cache)
    assert (await harness.get("t"))["weights"] == {"arm0": 0.2, "arm1": 0.8}
    assert rt.cache.policies["t"].weights == (0.2, 0.8)


def _changes(ids: dict[str, int], allocs: dict[str, int], suffix: str) -> list[Change]:
    """One change of every kind (and a stale one) for the experiments named `<kind><suffix>`."""
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def c(name: str, kind: Any, weights: list[float], **more: Any) -> Change:
        key = name + suffix
        return Change(experiment_id=ids[key], key=key, kind=kind,
                      based_on_allocation_id=allocs[key], weights=weights,
                      reason=f"{kind} for the test", **more)

    stale = c("stale", "reallocate", [0.3, 0.7])
    return [
        c("realloc", "reallocate", [0.123456789, 0.876543211],
          details={"seed": 0, "raw": [0.1, 0.9], "target": [0.12, 0.88]}),
        c("stop", "stop", [0.0, 1.0], status="completed", winner_index=1,
          details={"winner": "arm1", "promoted": True}),
        c("stage", "stage", [0.95, 0.05], stage=(1, now, 1234),
          details={"stage": 1, "share": 0.05}),
        c("arms", "rollback_arms", [0.6, 0.4, 0.0], disabled_arms=[2],
          details={"arms": ["arm2"]}),
        c("back", "rollback", [1.0, 0.0], status="rolled_back", disabled_arms=[1],
          details={"arms": ["arm1"]}),
        Change(**{**{f: getattr(stale, f) for f in stale.__dataclass_fields__},
                  "based_on_allocation_id": stale.based_on_allocation_id - 1}),
    ]


async def _written(harness: Harness, suffix: str) -> list[Any]:
    """What the changes left in PostgreSQL, Redis and the snapshot, per experiment (keys without
    `suffix`; no ids, times or versions, only whether the version moved)."""
    rt = harness.runtime
    out = []
    for name in ("realloc", "stop", "stage", "arms", "back", "stale"):
        key = name + suffix
        row = await harness.db.fetchrow(
            "SELECT id, status, winner_index, stage_index, stage_exposures_base, disabled_arms, "
            "status_reason, version FROM experiments WHERE key = $1", key,
        )
        allocations = await harness.db.fetch(
            "SELECT weights, reason FROM allocations WHERE experiment_id = $1 ORDER BY id",
            row["id"],
        )
        audit = [(a["actor"], a["action"], a["details"]) for a in await harness.audit(key)]
        cached = msgspec.json.decode(await rt.redis.get(rt.redis_keys.policy(key)))
        policy = rt.cache.policies[key]
        out.append((
            name, row["status"], row["winner_index"], row["stage_index"],
            row["stage_exposures_base"], row["disabled_arms"], row["status_reason"],
            [(list(a["weights"]), a["reason"]) for a in allocations], audit,
            cached["weights"], cached["version"] == row["version"],
            policy.version == row["version"], list(policy.weights),
        ))
    return out


async def test_a_batch_writes_what_one_change_at_a_time_writes(harness: Harness) -> None:
    """apply_changes writes, publishes and drops exactly what apply_change does, change by
    change: allocation rows, status, winner, stage, disabled arms, audit entries, the version
    bump, the Redis snapshot and this process's snapshot."""
    rt = harness.runtime
    outcomes: dict[str, list[Any]] = {}
    for suffix in ("-one", "-many"):
        ids: dict[str, int] = {}
        for name, policy, arms in (("realloc", "thompson", 2), ("stop", "thompson", 2),
                                   ("stage", "rollout", 2), ("arms", "fixed", 3),
                                   ("back", "fixed", 2), ("stale", "thompson", 2)):
            ids[name + suffix] = await harness.create(
                experiment_body(key=name + suffix, policy=policy, arms=arms)
            )
        allocs = {
            key: await harness.db.fetchval(
                "SELECT max(id) FROM allocations WHERE experiment_id = $1", eid
            )
            for key, eid in ids.items()
        }
        changes = _changes(ids, allocs, suffix)
        if suffix == "-one":
            outcomes[suffix] = [
                await apply_change(rt.pool, rt.redis, rt.redis_keys, ch, local=rt.cache)
                for ch in changes
            ]
        else:
            outcomes[suffix] = await apply_changes(
                rt.pool, rt.redis, rt.redis_keys, changes, local=rt.cache
            )
    assert outcomes["-one"] == outcomes["-many"] == [True] * 5 + [False]
    one, many = await _written(harness, "-one"), await _written(harness, "-many")
    assert one == many
    assert [w[-1] for w in many][:3] == [[0.123456789, 0.876543211], [0.0, 1.0], [0.95, 0.05]]


async def test_a_batch_whose_transaction_fails_is_applied_one_change_at_a_time(
    harness: Harness,
) -> None:
    """When a batch's transaction fails nothing of it stays written, and its changes are then
    applied one at a time: the bad one fails alone, the others are written and published."""
    rt = harness.runtime
    ids = [await harness.create(experiment_body(key=f"e{i}", policy="fixed", arms=2))
           for i in range(3)]
    changes = []
    for i, eid in enumerate(ids):
        alloc = await harness.db.fetchval(
            "SELECT max(id) FROM allocations WHERE experiment_id = $1", eid
        )
        changes.append(Change(
            experiment_id=eid, key=f"e{i}", kind="rollback_arms", based_on_allocation_id=alloc,
            weights=[1.0, 0.0], reason="test",
            disabled_arms=[1] if i != 1 else [70_000],  # not a smallint: its statement fails
        ))
    outcomes = await apply_changes(rt.pool, rt.redis, rt.redis_keys, changes, local=rt.cache)
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], Exception)
    assert (await harness.get("e0"))["weights"] == {"arm0": 1.0, "arm1": 0.0}
    assert (await harness.get("e1"))["weights"] == {"arm0": 0.5, "arm1": 0.5}
    assert rt.cache.policies["e2"].weights == (1.0, 0.0)
    assert len(await harness.audit("e1")) == len(await harness.audit("e0")) - 1


async def _only_bad_is_skipped(harness: Harness) -> None:
    """Two thompson experiments ready to stop, `bad` (whose statistics the test makes fail)
    and `good`: one cycle stops `good`, counts one failure and leaves `bad` running."""
    bad = await harness.create(experiment_body(key="bad", policy="thompson", arms=2))
    good = await harness.create(experiment_body(key="good", policy="thompson", arms=2))
    for eid in (bad, good):
        await harness.set_stats(eid, [5000, 5000], reward=_binary([0.05, 0.09], 5000))
    report = await harness.optimizer.run_cycle()
    assert (report.experiments, report.failures, report.changes) == (2, 1, 1)
    assert (await harness.get("good"))["status"] == "completed"
    assert (await harness.get("bad"))["status"] == "running"


async def test_one_failing_experiment_is_skipped(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment whose evaluation raises is logged and skipped; the others still move."""
    import croupier.optimizer.tick as tick_module

    real = tick_module.compute_many

    def flaky(raws: Any, rng: Any, **kw: Any) -> Any:
        results = real(raws, rng, **kw)
        return [
            RuntimeError("boom") if raw.spec.key == "bad" else result
            for raw, result in zip(raws, results, strict=True)
        ]

    monkeypatch.setattr(tick_module, "compute_many", flaky)
    await _only_bad_is_skipped(harness)


async def test_a_failing_batch_falls_back_to_one_experiment_at_a_time(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the batched statistics raise, each experiment is computed alone, so only the one
    that fails is skipped."""
    import croupier.optimizer.tick as tick_module

    real = tick_module.compute

    def broken(raws: Any, rng: Any, **kw: Any) -> Any:
        raise RuntimeError("batch")

    def flaky(raw: Any, rng: Any, **kw: Any) -> Any:
        if raw.spec.key == "bad":
            raise RuntimeError("boom")
        return real(raw, rng, **kw)

    monkeypatch.setattr(tick_module, "compute_many", broken)
    monkeypatch.setattr(tick_module, "compute", flaky)
    await _only_bad_is_skipped(harness)


async def test_srm_is_alerted_once(
    harness: Harness, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """A sample ratio mismatch sends one `srm` alert, not one per cycle, and changes nothing."""
    url, received = webhook
    body = experiment_body(key="f", policy="fixed", arms=2, alerts_url=url)
    eid = await harness.create(body)
    await harness.set_stats(eid, [1000, 1000], reward=_binary([0.05, 0.05], 1000))
    await harness.db.execute(
        "UPDATE arm_stats SET expected_exposures = CASE WHEN arm_index = 0 THEN 1200 ELSE 800 END "
        "WHERE experiment_id = $1", eid,
    )
    for _ in range(3):
        await harness.optimizer.run_cycle()
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert [b["event"] for b in received] == ["srm"]
    assert (await harness.get("f"))["status"] == "running"


async def test_a_cycle_in_chunks_decides_and_stores_what_one_batch_does(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statistics of a cycle are computed, and their sequential p-values merged, a chunk
    at a time (each merge while the next chunk is computed): the same decisions, the same
    stored p-values and history as with the whole cycle in one chunk, one merge per chunk."""
    import croupier.optimizer.tick as tick_module

    metrics = [
        {"name": "reward", "type": "binary", "direction": "maximize"},
        {"name": "errors", "type": "binary", "direction": "minimize", "max_degradation": 0.02},
    ]
    merges: list[int] = []
    real_persist = tick_module.persist_many

    async def counted(pool: Any, evaluated: Any) -> Any:
        merges.append(len(evaluated))
        return await real_persist(pool, evaluated)

    monkeypatch.setattr(tick_module, "persist_many", counted)
    seen: dict[int, Any] = {}
    for chunk in (1000, 2):
        merges.clear()
        monkeypatch.setattr(tick_module, "EVALUATE_CHUNK", chunk)
        for i in range(7):
            arms = 2 + i % 3
            eid = await harness.create(experiment_body(
                key=f"e{i}-{chunk}", policy=("thompson", "fixed")[i % 2], arms=arms,
                metrics=metrics, auto_stop=False,
            ))
            n = 5000 + 1000 * i
            await harness.set_stats(
                eid, [n] * arms,
                reward=_binary([0.05 + 0.02 * ((a + i) % 3) for a in range(arms)], n),
                errors=_binary([0.01] * arms, n),
            )
        optimizer = Optimizer(
            harness.runtime.settings, pool=harness.runtime.pool, redis=harness.runtime.redis,
            redis_keys=harness.runtime.redis_keys, cache=harness.runtime.cache,
            rng=np.random.default_rng(7),
        )
        report = await optimizer.run_cycle()
        assert (report.experiments, report.failures) == (7, 0)
        assert merges == ([7] if chunk == 1000 else [2, 2, 2, 1])
        stored = await harness.db.fetch(
            "SELECT e.key, s.metric, s.arm_index, s.kind, s.p_value, "
            "(SELECT array_agg(h.p_value) FROM sequential_history h "
            " WHERE h.experiment_id = s.experiment_id AND h.metric = s.metric "
            " AND h.arm_index = s.arm_index AND h.kind = s.kind) AS history "
            "FROM sequential_state s JOIN experiments e ON e.id = s.experiment_id "
            "WHERE e.status = 'running' ORDER BY e.id, s.metric, s.arm_index, s.kind"
        )
        seen[chunk] = (
            [(r.key.split("-")[0], r.change and (r.change.kind, r.change.weights), r.reason)
             for r in report.results],
            [(r["key"].split("-")[0], *tuple(r)[1:]) for r in stored],
        )
        await harness.db.execute("UPDATE experiments SET status = 'paused'")
    assert seen[2] == seen[1000]
    assert len(seen[2][1]) == sum(2 * (1 + i % 3) for i in range(7))  # a row per comparison
    assert any(p < 0.05 for *_, p, _ in seen[2][1])
    assert any(change is not None for _, change, _ in seen[2][0])
