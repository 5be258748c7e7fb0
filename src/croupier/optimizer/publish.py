"""How the optimizer changes an experiment: one transaction, then Redis SET + PUBLISH.

Every change writes, in one transaction, whatever it changes (allocation row, status and
winner, rollout stage, disabled arms), an audit entry with actor "optimizer" and a version
bump. The transaction first locks the experiment row and re-checks that it is still running
under the allocation the change was computed from; if an admin (or anyone) changed it
meanwhile, the optimizer's change is dropped and theirs stands. After the commit the policy is
published through `storage.snapshot.publish_experiment` (Redis SET + PUBLISH; PostgreSQL
polling carries it when Redis is down) and applied to this process's snapshot at once.

`apply_change` does this for one change; `apply_changes` (the optimizer's cycle) for many, a
batch of them in one transaction of a few set-based statements and one Redis pipeline, with
the same rows, checks and messages per change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec
import redis.asyncio as aioredis

from croupier.admin.service import audit
from croupier.decision.policy_cache import PolicyCache
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys
from croupier.storage.snapshot import load_policies, publish_experiment

logger = logging.getLogger("croupier.optimizer.publish")

_encoder = msgspec.json.Encoder()

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


async def _write_state(conn: Any, change: Change) -> bool:
    """Write a change's disabled arms, stage and status; False when it has none of them (the
    experiment's version must then be bumped by a touch instead)."""
    if change.disabled_arms is not None:
        await conn.execute(
            Q["optimizer_set_disabled"], change.experiment_id, change.disabled_arms, change.reason
        )
    if change.stage is not None:
        index, started_at, base = change.stage
        await conn.execute(Q["optimizer_set_stage"], change.experiment_id, index, started_at, base)
    if change.status is not None:
        await conn.execute(
            Q["experiment_set_status"],
            change.experiment_id,
            change.status,
            change.status,
            change.winner_index,
            change.reason,
        )
    return change.status is not None or change.stage is not None or change.disabled_arms is not None


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
        if not _still_applies(change, row):
            return False
        if change.weights is not None:
            await conn.execute(
                Q["allocation_insert"], change.experiment_id, change.weights, change.reason
            )
        if not await _write_state(conn, change):
            await conn.execute(Q["experiment_touch"], change.experiment_id)
        await audit(conn, ACTOR, change.key, change.kind, audit_details(change))
    data = await publish_experiment(pool, redis, keys, change.experiment_id)
    if data is not None and local is not None:
        local.apply(data)
    return True


BATCH_SIZE = 250
"""Changes written per transaction by :func:`apply_changes` (bounds how long one transaction
holds its experiments' row locks)."""


async def apply_changes(
    pool: asyncpg.Pool,
    redis: aioredis.Redis | None,
    keys: RedisKeys,
    changes: Sequence[Change],
    *,
    local: PolicyCache | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[bool | BaseException | None]:
    """:func:`apply_change` for many changes to different experiments, in batches of
    :data:`BATCH_SIZE`: each batch one transaction of a few statements, then one Redis
    pipeline. Per change: True (written and published), False (the experiment changed under
    us: dropped and logged, as `apply_change` does), the exception that kept it from being
    written, or None (not tried: `should_stop` said so before its batch).

    Each change writes what `apply_change` writes — its allocation row, status, stage or
    disabled arms, a version bump, one audit entry — after the same re-check under the row
    lock. If a batch's transaction fails, nothing of it is written and its changes are applied
    one at a time, so one bad change fails alone.
    """
    if len({c.experiment_id for c in changes}) != len(changes):
        raise ValueError("apply_changes takes at most one change per experiment")
    out: list[bool | BaseException | None] = [None] * len(changes)
    for start in range(0, len(changes), BATCH_SIZE):
        if should_stop():
            break
        batch = list(changes[start : start + BATCH_SIZE])
        try:
            written = await _write_batch(pool, batch)
        except Exception:
            logger.warning(
                "optimizer batch of %d changes failed; applying them one at a time",
                len(batch),
                exc_info=True,
            )
            for j, change in enumerate(batch):
                try:
                    out[start + j] = await apply_change(pool, redis, keys, change, local=local)
                except Exception as exc:
                    out[start + j] = exc
            continue
        for j, ok in enumerate(written):
            out[start + j] = ok
        applied = [c for c, ok in zip(batch, written, strict=True) if ok]
        if applied:
            await _publish_many(pool, redis, keys, [c.experiment_id for c in applied], local)
    return out


async def _write_batch(pool: asyncpg.Pool, changes: list[Change]) -> list[bool]:
    """One transaction for `changes`: lock, re-check, write; whether each was written."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            Q["optimizer_lock_experiments"], sorted({c.experiment_id for c in changes})
        )
        found = {r["id"]: r for r in rows}
        written: list[bool] = []
        for change in changes:
            row = found.get(change.experiment_id)
            written.append(_still_applies(change, row))
        todo = [c for c, ok in zip(changes, written, strict=True) if ok]
        if not todo:
            return written
        with_weights = [c for c in todo if c.weights is not None]
        if with_weights:
            flat: list[float] = []
            first: list[int] = []
            last: list[int] = []
            for c in with_weights:
                assert c.weights is not None
                first.append(len(flat) + 1)
                flat += c.weights
                last.append(len(flat))
            await conn.execute(
                Q["allocation_insert_many"],
                [c.experiment_id for c in with_weights],
                flat,
                first,
                last,
                [c.reason for c in with_weights],
            )
        touched: list[int] = []
        for change in todo:  # the rare kinds, one statement each, as apply_change writes them
            if not await _write_state(conn, change):
                touched.append(change.experiment_id)
        if touched:
            await conn.execute(Q["experiment_touch_many"], touched)
        await conn.execute(
            Q["audit_insert_many"],
            ACTOR,
            [c.key for c in todo],
            [c.kind for c in todo],
            [_encoder.encode(audit_details(c)).decode() for c in todo],
        )
    return written


def _still_applies(change: Change, row: Any) -> bool:
    """The re-check under the row lock: still running under the allocation the change was
    computed from (logged when not)."""
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
    return True


def audit_details(change: Change) -> dict[str, Any]:
    """The details of a change's audit entry: the reason, the change's details, the weights."""
    details: dict[str, Any] = {"reason": change.reason, **change.details}
    if change.weights is not None:
        details["weights"] = [round(w, 6) for w in change.weights]
    return details


async def _publish_many(
    pool: asyncpg.Pool,
    redis: aioredis.Redis | None,
    keys: RedisKeys,
    experiment_ids: list[int],
    local: PolicyCache | None,
) -> None:
    """`publish_experiment` for many committed changes: one read of their policies, one Redis
    pipeline (SET + PUBLISH each), then this process's snapshot. A failure is logged, not
    raised: the changes are committed and PostgreSQL polling carries them."""
    try:
        found = await load_policies(pool, experiment_ids)
    except Exception:
        logger.exception("could not read %d changed policies to publish", len(experiment_ids))
        return
    if redis is not None and found:
        try:
            payloads = [_encoder.encode(data) for data in found]
            async with redis.pipeline(transaction=False) as pipe:
                # every snapshot in one MSET (one reply to read instead of one per SET), then
                # the messages
                pipe.mset({keys.policy(d.key): p for d, p in zip(found, payloads, strict=True)})
                for payload in payloads:
                    pipe.publish(keys.policy_channel, payload)
                await pipe.execute()
        except Exception as exc:  # Redis down: PostgreSQL polling will carry the changes
            logger.warning("could not publish %d policies to Redis: %s", len(found), exc)
    if local is not None:
        for data in found:
            local.apply(data)
