"""How the optimizer changes an experiment: one transaction, then Redis SET + PUBLISH.

Every change writes, in one transaction, whatever it changes (allocation row, status and
winner, rollout stage, disabled arms), an audit entry with actor "optimizer" and a version
bump. The transaction first locks the experiment row and re-checks that it is still running
under the allocation the change was computed from; if an admin (or anyone) changed it
meanwhile, the optimizer's change is dropped and theirs stands. After the commit the policy is
published through `storage.snapshot.publish_experiment` (Redis SET + PUBLISH; PostgreSQL
polling carries it when Redis is down) and applied to this process's snapshot at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import redis.asyncio as aioredis

from croupier.admin.service import audit
from croupier.decision.policy_cache import PolicyCache
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys
from croupier.storage.snapshot import publish_experiment

logger = logging.getLogger("croupier.optimizer.publish")

ACTOR = "optimizer"

ChangeKind = Literal["reallocate", "stop", "rollback", "rollback_arms", "stage"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change the optimizer wants to make to a running experiment.

    Attributes:
        experiment_id, key: the experiment.
        kind: what kind of change (also the audit action).
        based_on_allocation_id: the allocation in force when the change was computed; the
            change is dropped if another allocation has been written since.
        weights: a new allocation row, or None.
        reason: the allocation row's reason and the status reason, one sentence.
        status: "completed" or "rolled_back" to end the experiment, or None.
        winner_index: the winner recorded with "completed" (None: serve the control).
        stage: (stage_index, stage_started_at, stage_exposures_base) for a rollout stage change.
        disabled_arms: the new full set of disabled arms, or None to leave it.
        details: extra audit details.
    """

    experiment_id: int
    key: str
    kind: ChangeKind
    based_on_allocation_id: int
    weights: list[float] | None
    reason: str
    status: Literal["completed", "rolled_back"] | None = None
    winner_index: int | None = None
    stage: tuple[int, datetime, int] | None = None
    disabled_arms: list[int] | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def apply_change(
    pool: asyncpg.Pool,
    redis: aioredis.Redis | None,
    keys: RedisKeys,
    change: Change,
    *,
    local: PolicyCache | None = None,
) -> bool:
    """Commit one change and publish it; False when the experiment changed under us."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q["optimizer_lock_experiment"], change.experiment_id)
        if row is None or row["status"] != "running":
            logger.info(
                "optimizer change dropped key=%s kind=%s: experiment is %s",
                change.key,
                change.kind,
                "gone" if row is None else row["status"],
            )
            return False
        if row["allocation_id"] != change.based_on_allocation_id:
            logger.info(
                "optimizer change dropped key=%s kind=%s: allocation changed meanwhile",
                change.key,
                change.kind,
            )
            return False
        if change.weights is not None:
            await conn.execute(
                Q["allocation_insert"], change.experiment_id, change.weights, change.reason
            )
        if change.disabled_arms is not None:
            await conn.execute(
                Q["optimizer_set_disabled"],
                change.experiment_id,
                change.disabled_arms,
                change.reason,
            )
        if change.stage is not None:
            index, started_at, base = change.stage
            await conn.execute(
                Q["optimizer_set_stage"], change.experiment_id, index, started_at, base
            )
        if change.status is not None:
            await conn.execute(
                Q["experiment_set_status"],
                change.experiment_id,
                change.status,
                change.status,
                change.winner_index,
                change.reason,
            )
        elif change.stage is None and change.disabled_arms is None:
            await conn.execute(Q["experiment_touch"], change.experiment_id)
        details: dict[str, Any] = {"reason": change.reason, **change.details}
        if change.weights is not None:
            details["weights"] = [round(w, 6) for w in change.weights]
        await audit(conn, ACTOR, change.key, change.kind, details)
    data = await publish_experiment(pool, redis, keys, change.experiment_id)
    if data is not None and local is not None:
        local.apply(data)
    return True
