"""Keeps a process's policy snapshot and key cache current.

Two sources, both always on:
- Redis pub/sub: snapshots published by whoever changed an experiment are applied at once;
- PostgreSQL polling every `snapshot_poll_interval_s`: a cheap fingerprint of the experiments
  and api_keys tables; when it changes, the changed rows are reloaded. This alone keeps every
  process within a second of the truth when Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import redis.asyncio as aioredis

from croupier.auth import KeyCache
from croupier.decision.policy_cache import PolicyCache
from croupier.model import PolicyData, PolicyRemoved
from croupier.storage.db import DB_ERRORS
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys
from croupier.storage.snapshot import load_keys, load_policies, message_decoder

logger = logging.getLogger("croupier.feed")


class SnapshotFeed:
    """Owns the subscriber and poller tasks of one process."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        redis_keys: RedisKeys,
        cache: PolicyCache,
        keys: KeyCache,
        poll_interval_s: float,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.redis_keys = redis_keys
        self.cache = cache
        self.keys = keys
        self.poll_interval_s = poll_interval_s
        self.redis_connected = False
        self.last_sync_monotonic = time.monotonic()
        self._fingerprint: tuple[object, ...] | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[None]] = set()

    async def load_all(self) -> None:
        """Initial full load (raises if PostgreSQL is unreachable)."""
        self._fingerprint = await self._read_fingerprint()
        self.cache.replace_all(await load_policies(self.pool))
        self.keys.replace_all(await load_keys(self.pool))
        self.last_sync_monotonic = time.monotonic()

    def start(self) -> None:
        """Start subscriber and poller."""
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="croupier-feed-subscriber"),
            asyncio.create_task(self._poll(), name="croupier-feed-poller"),
        ]

    async def stop(self) -> None:
        """Stop both tasks (bounded)."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read_fingerprint(self) -> tuple[object, ...]:
        row = await self.pool.fetchrow(Q["feed_fingerprint"])
        assert row is not None
        return tuple(row)

    async def sync(self) -> None:
        """Reload whatever changed in PostgreSQL since the last look."""
        fingerprint = await self._read_fingerprint()
        if fingerprint != self._fingerprint:
            rows = await self.pool.fetch(Q["experiment_versions"])
            known = self.cache.versions()
            live = {r["id"]: r["version"] for r in rows}
            changed = [i for i, v in live.items() if known.get(i, -1) < v]
            for policy in list(self.cache.policies.values()):
                if policy.experiment_id not in live:
                    self.cache.remove(policy.key, policy.version)
            if changed:
                for data in await load_policies(self.pool, changed):
                    self.cache.apply(data)
            self.keys.replace_all(await load_keys(self.pool))
            self._fingerprint = fingerprint
        self.last_sync_monotonic = time.monotonic()

    async def _poll(self) -> None:
        failing = False
        while not self._stop.is_set():
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.sync()
                if failing:
                    logger.info("snapshot polling of PostgreSQL resumed")
                failing = False
            except DB_ERRORS as exc:
                if not failing:
                    logger.warning("snapshot polling failed, serving the last snapshot: %s", exc)
                failing = True

    def _apply(self, channel: str, payload: bytes) -> None:
        if channel == self.redis_keys.keys_channel:
            # the message only says "changed"; reload the (small) key table right away
            task = asyncio.get_running_loop().create_task(
                self._reload_keys(), name="croupier-keys-reload"
            )
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)
            return
        message = message_decoder.decode(payload)
        if isinstance(message, PolicyRemoved):
            self.cache.remove(message.key, message.version)
        elif isinstance(message, PolicyData):
            self.cache.apply(message)

    async def _reload_keys(self) -> None:
        try:
            self.keys.replace_all(await load_keys(self.pool))
        except DB_ERRORS as exc:
            logger.warning("could not reload API keys: %s", exc)

    async def _drop_idle_connections(self) -> None:
        """Close the shared Redis client's idle pooled connections.

        After Redis restarts, a pooled connection to the old server fails its next command with
        "Connection closed by server": the first publish after the restart was lost (the change
        then arrived by polling only). Dropped when the subscription is lost and again when it
        is back, so the next command opens a fresh connection.
        """
        try:
            await self.redis.connection_pool.disconnect(inuse_connections=False)
        except Exception:
            logger.debug("closing idle Redis connections failed", exc_info=True)

    async def _subscribe(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.redis_keys.policy_channel, self.redis_keys.keys_channel)
                if not self.redis_connected:
                    logger.info("subscribed to policy updates on Redis")
                    await self._drop_idle_connections()
                self.redis_connected = True
                backoff = 0.2
                # anything published while we were not subscribed is caught by a sync
                with contextlib.suppress(*DB_ERRORS):  # the poller reports PostgreSQL trouble
                    await self.sync()
                while not self._stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    try:
                        self._apply(channel, message["data"])
                    except Exception:
                        logger.exception("bad message on %s ignored", channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.redis_connected:
                    logger.warning("Redis subscription lost (%s); polling PostgreSQL", exc)
                    await self._drop_idle_connections()
                self.redis_connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:
                    logger.debug("pubsub close failed", exc_info=True)
