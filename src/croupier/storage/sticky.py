"""The shared, durable store of sticky assignments for adaptive (`thompson`) experiments.

Hash-based policies need no store: the unit's hash decides. An adaptive sticky experiment
keeps the arm a unit got first although weights move, so the first assignment is claimed
atomically in Redis (HSETNX) and shared by every process; the embedded Redis persists it (AOF).
Each process asks at most once per unit (it remembers answers locally). When Redis does not
answer within 50 ms, the decision falls back to this process's own draw (documented).
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from croupier.decision.policy_cache import Policy
from croupier.storage.redis_keys import RedisKeys

logger = logging.getLogger("croupier.sticky")


class StickyStore:
    """HSETNX-based first-assignment-wins store."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.failures = 0

    async def claim(
        self, policy: Policy, unit_id: str, arm: int, propensity: float
    ) -> tuple[int, float, bool] | None:
        """(arm, propensity, already_assigned) for the unit, or None if Redis is unavailable."""
        key = self.keys.sticky(policy.experiment_id)
        value = f"{arm}:{propensity!r}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hsetnx(key, unit_id, value)
                pipe.hget(key, unit_id)
                created, stored = await pipe.execute()
        except Exception as exc:
            self.failures += 1
            logger.debug("sticky store unavailable: %s", exc)
            return None
        if created:
            return arm, propensity, False
        text = stored.decode() if isinstance(stored, bytes) else str(stored)
        arm_text, _, prop_text = text.partition(":")
        return int(arm_text), float(prop_text), True

    async def close(self) -> None:
        """Close the store's connections."""
        await self.redis.aclose()
