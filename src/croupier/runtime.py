"""The resources one server process owns, started and stopped together by the app lifespan."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from croupier.admin.service import ExperimentService
from croupier.auth import KeyCache
from croupier.decision.decide import Decider
from croupier.decision.exposure import DecisionLog
from croupier.decision.ids import DecisionIdCodec
from croupier.decision.policy_cache import Policy, PolicyCache
from croupier.ingest.buffer import RewardBuffer
from croupier.metrics import Metrics
from croupier.optimizer.loop import Optimizer
from croupier.settings import Settings
from croupier.storage.db import Executor, create_pool
from croupier.storage.decision_writer import DecisionWriter
from croupier.storage.feed import SnapshotFeed
from croupier.storage.migrate import migrate
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys
from croupier.storage.reward_writer import RewardItem, write_rewards
from croupier.storage.snapshot import load_policies
from croupier.storage.sticky import StickyStore

logger = logging.getLogger("croupier.runtime")


async def ensure_secret(conn: Executor) -> bytes:
    """The installation's decision-id signing secret, created on first use."""
    await conn.execute(Q["secret_init"], secrets.token_bytes(32))
    secret = await conn.fetchval(Q["secret_get"])
    return bytes(secret)


class Runtime:
    """Pool, Redis, snapshot, key cache, decision log, reward buffer and their tasks."""

    def __init__(self, settings: Settings) -> None:
        if settings.database_url is None or settings.redis_url is None:
            raise ValueError(
                "create_app needs database_url and redis_url; `croupier serve` starts the "
                "embedded servers and fills them in"
            )
        self.settings = settings
        self.redis_keys = RedisKeys(settings.redis_prefix)
        self.cache = PolicyCache()
        self.keys = KeyCache()
        self.log = DecisionLog(max_events=settings.decision_buffer_max)
        self.metrics = Metrics(self)
        self.pool: asyncpg.Pool
        self.redis: aioredis.Redis
        self.codec: DecisionIdCodec
        self.decider: Decider
        self.writer: DecisionWriter
        self.rewards: RewardBuffer
        self.feed: SnapshotFeed
        self.experiments: ExperimentService
        self.extras: list[Any] = []  # background components started after the core (optimizer)
        # when settings.optimizer_enabled; `croupier serve` disables it in its workers and runs
        # the optimizer in a process of its own
        self.optimizer: Optimizer | None = None

    async def start(self) -> None:
        """Open connections, migrate, load the snapshot, start background tasks."""
        s = self.settings
        assert s.database_url is not None and s.redis_url is not None
        self.pool = await create_pool(
            s.database_url, min_size=s.db_pool_min_size, max_size=s.db_pool_max_size
        )
        async with self.pool.acquire() as conn:
            await migrate(conn)
            self.codec = DecisionIdCodec(await ensure_secret(conn))
        self.redis = aioredis.from_url(
            s.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0, health_check_interval=5
        )
        sticky_redis = aioredis.from_url(
            s.redis_url, socket_timeout=0.05, socket_connect_timeout=0.05
        )
        self.sticky = StickyStore(sticky_redis, self.redis_keys)
        self.decider = Decider(
            codec=self.codec,
            log=self.log,
            sticky_cache_size=s.sticky_cache_size,
            sticky_claim=self.sticky.claim,
        )
        self.feed = SnapshotFeed(
            pool=self.pool,
            redis=self.redis,
            redis_keys=self.redis_keys,
            cache=self.cache,
            keys=self.keys,
            poll_interval_s=s.snapshot_poll_interval_s,
        )
        self.experiments = ExperimentService(self.pool, self.redis, self.redis_keys, self.cache)
        await self.feed.load_all()
        self.feed.start()
        self.writer = DecisionWriter(
            self.pool,
            self.log,
            flush_interval_ms=s.flush_interval_ms,
            batch_max=s.decision_batch_max,
        )
        self.writer.start()

        async def write(requests: list[list[RewardItem]]) -> Any:
            return await write_rewards(self.pool, requests)

        self.rewards = RewardBuffer(
            write,
            batch_max_items=s.reward_batch_max,
            max_in_flight=s.reward_commits_in_flight,
            observe_commit_s=self.metrics.observe_commit,
        )
        self.rewards.start()
        if s.optimizer_enabled:
            self.optimizer = Optimizer(
                s, pool=self.pool, redis=self.redis, redis_keys=self.redis_keys, cache=self.cache
            )
            await self.optimizer.start()
            self.extras.append(self.optimizer)

    async def stop(self) -> None:
        """Stop in reverse order: no new work, flush decisions and rewards, close connections."""
        for extra in reversed(self.extras):
            try:
                await extra.stop()
            except Exception:
                logger.exception("stopping %s failed", extra)
        await self.rewards.stop()
        await self.feed.stop()
        await self.writer.stop()
        await self.sticky.close()
        await self.redis.aclose()
        try:
            async with asyncio.timeout(10):
                await self.pool.close()
        except TimeoutError:
            self.pool.terminate()

    async def policy_for_id(self, experiment_id: int) -> Policy | None:
        """A policy not (yet) in the snapshot, loaded from PostgreSQL (rare path)."""
        found = await load_policies(self.pool, [experiment_id])
        if not found:
            return None
        self.cache.apply(found[0])
        return self.cache.by_id.get(experiment_id)
