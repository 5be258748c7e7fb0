"""The optimizer loop: leader-elected, supervised, one cycle per `optimizer_interval_s`.

Leadership is a PostgreSQL session advisory lock (`pg_try_advisory_lock`) held on a connection
of its own. Whoever holds it optimizes; everyone else tries again every interval. If the
leader's connection dies (process killed, network gone, PostgreSQL restarted) PostgreSQL
releases the lock and a follower takes it at its next try — within one interval of the
release, so a dead leader is replaced within two. A leader that finds its connection dead
steps down at once. With any number of processes exactly one optimizes.

Each cycle reads every running experiment's statistics at once, re-evaluates those whose
statistics changed and applies the changes (`tick.run_cycle`); one experiment's failure is
logged and skipped, never the loop. The component keeps its leader status and the time and
duration of its last cycle for readiness and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from croupier.decision.policy_cache import PolicyCache
from croupier.optimizer.alerts import AlertSender
from croupier.optimizer.tick import TickContext, TickResult
from croupier.optimizer.tick import run_cycle as cycle
from croupier.settings import Settings
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys

logger = logging.getLogger("croupier.optimizer")

OPTIMIZER_LOCK_ID = 0x43524F5550544D  # "CRO" "UPTM": the optimizer's advisory lock key


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did."""

    experiments: int
    changes: int
    failures: int
    duration_s: float
    results: tuple[TickResult, ...]


class Optimizer:
    """The background optimizer of one process (it optimizes only while it is the leader)."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None,
        redis_keys: RedisKeys,
        cache: PolicyCache | None = None,
        alerts: AlertSender | None = None,
        lock_id: int = OPTIMIZER_LOCK_ID,
        rng: np.random.Generator | None = None,
    ) -> None:
        if settings.database_url is None:
            raise ValueError("the optimizer needs settings.database_url for its lock connection")
        self.settings = settings
        self.pool = pool
        self.alerts = alerts if alerts is not None else AlertSender()
        self.lock_id = lock_id
        self.ctx = TickContext(
            pool=pool,
            redis=redis,
            redis_keys=redis_keys,
            settings=settings,
            rng=rng if rng is not None else np.random.default_rng(),
            cache=cache,
            alerts=self.alerts,
        )
        self.is_leader = False
        self.leader_since: datetime | None = None
        self.cycles = 0
        self.last_cycle_at: datetime | None = None
        self.last_cycle_duration_s: float | None = None
        self.last_cycle: CycleReport | None = None
        self.failures = 0
        self._lock_conn: asyncpg.Connection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Optimizer(leader={self.is_leader}, cycles={self.cycles})"

    async def start(self) -> None:
        """Start the alert sender and the supervised loop task."""
        self._stop.clear()
        self.alerts.start()
        self._task = asyncio.create_task(self._run(), name="croupier-optimizer-loop")

    async def stop(self) -> None:
        """Finish the current cycle (bounded by `optimizer_shutdown_s`), release leadership."""
        self._stop.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(self.settings.optimizer_shutdown_s):
                    await asyncio.shield(self._task)
            except TimeoutError:
                logger.warning("optimizer cycle did not finish in time; cancelling it")
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._release()
        await self.alerts.stop()

    async def _run(self) -> None:
        interval_s = self.settings.optimizer_interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self._elect()
                if self.is_leader:
                    await self.run_cycle()
            except Exception:
                logger.exception("optimizer cycle failed; trying again next interval")
            remaining = interval_s - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(remaining, 0.0)):
                    await self._stop.wait()

    async def _elect(self) -> None:
        """Keep or take leadership; step down when the lock connection is gone."""
        conn = self._lock_conn
        if conn is not None and not conn.is_closed():
            if self.is_leader:
                try:  # the session (and so the lock) is alive
                    async with asyncio.timeout(max(1.0, self.settings.optimizer_interval_s)):
                        await conn.fetchval("SELECT 1")
                    return
                except Exception as exc:
                    logger.warning("optimizer lost its lock connection (%s); stepping down", exc)
                    await self._release()
        elif conn is not None:
            if self.is_leader:
                logger.warning("optimizer lock connection closed; stepping down")
            await self._release()
        if self._lock_conn is None:
            assert self.settings.database_url is not None
            self._lock_conn = await asyncpg.connect(
                self.settings.database_url,
                timeout=5,
                command_timeout=10,
                server_settings={"application_name": f"croupier-optimizer pid={os.getpid()}"},
            )
        got = await self._lock_conn.fetchval(Q["optimizer_try_lock"], self.lock_id)
        if got:
            self.is_leader = True
            self.leader_since = datetime.now(UTC)
            logger.info(
                "optimizer is the leader (interval %.3g s)", self.settings.optimizer_interval_s
            )

    def _still_leader(self) -> bool:
        return self.is_leader and self._lock_conn is not None and not self._lock_conn.is_closed()

    async def _release(self) -> None:
        """Give up leadership and close the lock connection."""
        was_leader = self.is_leader
        self.is_leader = False
        self.leader_since = None
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            if was_leader and not conn.is_closed():
                async with asyncio.timeout(2.0):
                    await conn.fetchval(Q["optimizer_unlock"], self.lock_id)
        except Exception as exc:
            logger.debug("optimizer unlock failed (closing the session releases it): %s", exc)
        try:
            async with asyncio.timeout(2.0):
                await conn.close()
        except Exception:
            conn.terminate()
        if was_leader:
            logger.info("optimizer stepped down")

    async def run_cycle(self, *, now: datetime | None = None) -> CycleReport:
        """One pass over every running experiment (the leader's work; callable in tests)."""
        started = time.monotonic()

        def should_stop() -> bool:
            return self._stop.is_set() or (self._task is not None and not self._still_leader())

        n, results, failures = await cycle(
            self.ctx, now=now or datetime.now(UTC), should_stop=should_stop
        )
        duration_s = time.monotonic() - started
        report = CycleReport(
            experiments=n,
            changes=sum(1 for r in results if r.applied),
            failures=failures,
            duration_s=duration_s,
            results=tuple(results),
        )
        self.cycles += 1
        self.failures += failures
        self.last_cycle_at = datetime.now(UTC)
        self.last_cycle_duration_s = duration_s
        self.last_cycle = report
        logger.debug(
            "optimizer cycle experiments=%d changes=%d failures=%d duration_s=%.3f %s",
            report.experiments,
            report.changes,
            failures,
            duration_s,
            " ".join(f"{k}={v}" for k, v in self.ctx.last_phases.items()),
        )
        return report
