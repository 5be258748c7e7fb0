"""Building policy snapshots from PostgreSQL and publishing them through Redis."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis

from croupier.auth import KeyEntry
from croupier.model import ExperimentSpec, PolicyData, PolicyRemoved
from croupier.storage.db import Executor
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys

logger = logging.getLogger("croupier.snapshot")

_spec_decoder = msgspec.json.Decoder(ExperimentSpec)
_encoder = msgspec.json.Encoder()
Message = PolicyData | PolicyRemoved
message_decoder = msgspec.json.Decoder(PolicyData | PolicyRemoved)


def policy_from_row(row: Any) -> PolicyData:
    """Compile one `policy_rows` row into publishable policy data."""
    spec = _spec_decoder.decode(row["settings"])
    return PolicyData(
        experiment_id=row["id"],
        key=row["key"],
        version=row["version"],
        status=row["status"],
        ended_status=row["ended_status"],
        policy=row["policy"],
        sticky=row["sticky"],
        salt=row["salt"],
        allocation_id=row["allocation_id"],
        weights=list(row["weights"]),
        arm_keys=[a.key for a in spec.arms],
        configs=[msgspec.Raw(_encoder.encode(a.config)) for a in spec.arms],
        control_index=spec.control_index,
        winner_index=row["winner_index"],
        targeting=list(spec.targeting),
        traffic_fraction=spec.traffic_fraction,
        metric_types={m.name: m.type for m in spec.metrics},
    )


async def load_policies(conn: Executor, ids: list[int] | None = None) -> list[PolicyData]:
    """Policy data for the given experiments (all when `ids` is None)."""
    rows = await conn.fetch(Q["policy_rows"], ids)
    return [policy_from_row(r) for r in rows]


async def load_keys(conn: Executor) -> dict[str, KeyEntry]:
    """The whole API key table (small) as cache entries."""
    rows = await conn.fetch(Q["key_all"])
    return {r["id"]: KeyEntry(r["scope"], bytes(r["secret_hash"]), r["revoked"]) for r in rows}


async def publish_policy(
    redis: aioredis.Redis | None, keys: RedisKeys, data: PolicyData | PolicyRemoved
) -> None:
    """SET the snapshot and PUBLISH it; a Redis failure is logged, never raised (polling
    PostgreSQL delivers the change anyway)."""
    if redis is None:
        return
    payload = _encoder.encode(data)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            if isinstance(data, PolicyRemoved):
                pipe.delete(keys.policy(data.key))
            else:
                pipe.set(keys.policy(data.key), payload)
            pipe.publish(keys.policy_channel, payload)
            await pipe.execute()
    except Exception as exc:  # Redis down: PostgreSQL polling will carry the change
        logger.warning("could not publish policy %s to Redis: %s", data.key, exc)


async def publish_experiment(
    conn: Executor,
    redis: aioredis.Redis | None,
    keys: RedisKeys,
    experiment_id: int,
) -> PolicyData | None:
    """Load one experiment's committed policy and publish it."""
    found = await load_policies(conn, [experiment_id])
    if not found:
        return None
    await publish_policy(redis, keys, found[0])
    return found[0]


async def publish_keys_changed(redis: aioredis.Redis | None, keys: RedisKeys) -> None:
    """Tell every process to reload the key table."""
    if redis is None:
        return
    try:
        await redis.publish(keys.keys_channel, b"changed")
    except Exception as exc:
        logger.warning("could not publish key change to Redis: %s", exc)
