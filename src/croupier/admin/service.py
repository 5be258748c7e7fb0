"""Experiment lifecycle: create, read, update, delete, state transitions — each change in one
transaction with its audit entry, then published to every process."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis
from msgspec import UNSET

from croupier.admin.schemas import (
    AllocationOut,
    AuditOut,
    ExperimentCreate,
    ExperimentOut,
    ExperimentPatch,
)
from croupier.admin.validation import default_metrics, default_sticky, validate_spec
from croupier.decision.policy_cache import PolicyCache
from croupier.errors import Conflict, Invalid, NotFound, field_error
from croupier.model import ExperimentSpec, PolicyRemoved, Status
from croupier.storage.db import Conn
from croupier.storage.queries import Q
from croupier.storage.redis_keys import RedisKeys
from croupier.storage.snapshot import publish_experiment, publish_policy

logger = logging.getLogger("croupier.admin")

_spec_decoder = msgspec.json.Decoder(ExperimentSpec)
_encoder = msgspec.json.Encoder()

STATUSES: tuple[Status, ...] = (
    "draft",
    "running",
    "paused",
    "completed",
    "rolled_back",
    "archived",
)
DEFINITION_FIELDS = ("policy", "sticky", "arms", "metrics", "stages")

# action -> (allowed source states, target state)
TRANSITIONS: dict[str, tuple[tuple[str, ...], Status]] = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "stop": (("running", "paused"), "completed"),
    "rollback": (("running", "paused"), "rolled_back"),
    "archive": (("completed", "rolled_back"), "archived"),
}


def _not_found(key: str) -> NotFound:
    return NotFound(f"No experiment with key {key!r}; list them with GET /v1/experiments.")


def to_out(row: Any, weights: list[float]) -> ExperimentOut:
    """The API view of an experiment row and its current weights."""
    spec = _spec_decoder.decode(row["settings"])
    winner = spec.arms[row["winner_index"]].key if row["winner_index"] is not None else None
    return ExperimentOut(
        key=spec.key,
        name=spec.name,
        description=spec.description,
        policy=spec.policy,
        sticky=spec.sticky,
        status=row["status"],
        arms=spec.arms,
        weights={a.key: w for a, w in zip(spec.arms, weights, strict=True)},
        metrics=spec.metrics,
        targeting=spec.targeting,
        traffic_fraction=spec.traffic_fraction,
        confidence_level=spec.confidence_level,
        auto_stop=spec.auto_stop,
        auto_promote=spec.auto_promote,
        min_exposures_per_arm=spec.min_exposures_per_arm,
        min_arm_weight=spec.min_arm_weight,
        p_best_threshold=spec.p_best_threshold,
        loss_threshold=spec.loss_threshold,
        max_exposures=spec.max_exposures,
        max_duration_s=spec.max_duration_s,
        stages=spec.stages,
        stage=row["stage_index"],
        alerts_url=spec.alerts_url,
        winner=winner,
        status_reason=row["status_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


async def audit(
    conn: Conn,
    actor: str,
    experiment_key: str | None,
    action: str,
    details: dict[str, Any],
) -> None:
    """Write one audit entry (inside the caller's transaction)."""
    await conn.execute(
        Q["audit_insert"], actor, experiment_key, action, _encoder.encode(details).decode()
    )


class ExperimentService:
    """The admin operations; every change is audited and published."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis | None,
        keys: RedisKeys,
        local: PolicyCache | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.local = local  # this process's snapshot: it sees its own changes at once

    async def _publish(self, experiment_id: int) -> None:
        data = await publish_experiment(self.pool, self.redis, self.keys, experiment_id)
        if data is not None and self.local is not None:
            self.local.apply(data)

    async def _write_definition(
        self, conn: Conn, experiment_id: int, spec: ExperimentSpec, reason: str
    ) -> None:
        """(Re)write arms, statistics rows and the initial allocation of a draft."""
        await conn.execute(Q["arms_delete"], experiment_id)
        await conn.execute(Q["stats_reset"], experiment_id)
        await conn.execute(Q["metric_stats_reset"], experiment_id)
        await conn.execute(
            Q["arm_insert_many"],
            experiment_id,
            [a.key for a in spec.arms],
            [_encoder.encode(a.config).decode() for a in spec.arms],
            [a.control for a in spec.arms],
        )
        await conn.execute(Q["arm_stats_init"], experiment_id, len(spec.arms))
        await conn.execute(
            Q["metric_stats_init"], experiment_id, len(spec.arms), [m.name for m in spec.metrics]
        )
        await conn.execute(
            Q["allocation_insert"], experiment_id, [a.weight for a in spec.arms], reason
        )

    async def create(self, body: ExperimentCreate, actor: str) -> ExperimentOut:
        """Validate and store a new draft experiment."""
        fields = msgspec.structs.asdict(body)  # the same names as ExperimentSpec's
        fields.update(
            sticky=default_sticky(body.policy) if body.sticky is None else body.sticky,
            metrics=body.metrics if body.metrics is not None else default_metrics(),
            targeting=body.targeting or [],
        )
        spec = validate_spec(ExperimentSpec(**fields))
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                experiment_id = await conn.fetchval(
                    Q["experiment_insert"],
                    spec.key,
                    spec.name,
                    spec.description,
                    spec.policy,
                    spec.sticky,
                    secrets.token_hex(16),
                    _encoder.encode(spec).decode(),
                    0 if spec.policy == "rollout" else None,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"An experiment with key {spec.key!r} already exists; choose another key "
                    "or PATCH the existing one."
                ) from None
            await self._write_definition(conn, experiment_id, spec, "created")
            await audit(
                conn,
                actor,
                spec.key,
                "create",
                {"policy": spec.policy, "arms": [a.key for a in spec.arms]},
            )
        await self._publish(experiment_id)
        logger.info("experiment created key=%s policy=%s actor=%s", spec.key, spec.policy, actor)
        return await self.get(spec.key)

    async def get(self, key: str) -> ExperimentOut:
        """One experiment."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["experiment_get"], key)
            if row is None:
                raise _not_found(key)
            alloc = await conn.fetchrow(Q["allocation_current"], row["id"])
        assert alloc is not None  # every experiment is created with an allocation
        return to_out(row, list(alloc["weights"]))

    async def list_experiments(self, status: str | None) -> list[ExperimentOut]:
        """All experiments, optionally of one status."""
        if status is not None and status not in STATUSES:
            raise Invalid(
                f"Unknown status {status!r}; use one of: {', '.join(STATUSES)}.",
                extra=[field_error("status", f"must be one of {', '.join(STATUSES)}")],
            )
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["experiment_list"], status)
            ids = [r["id"] for r in rows]
            weights = {
                r["experiment_id"]: list(r["weights"])
                for r in await conn.fetch(Q["current_weights_many"], ids)
            }
        return [to_out(r, weights[r["id"]]) for r in rows]

    async def patch(self, key: str, body: ExperimentPatch, actor: str) -> ExperimentOut:
        """Change some fields; definition fields only in draft."""
        changes = {
            f: getattr(body, f) for f in body.__struct_fields__ if getattr(body, f) is not UNSET
        }
        if not changes:
            return await self.get(key)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["experiment_get_for_update"], key)
            if row is None:
                raise _not_found(key)
            current = _spec_decoder.decode(row["settings"])
            definition = sorted(set(changes) & set(DEFINITION_FIELDS))
            if definition and row["status"] != "draft":
                raise Conflict(
                    f"{', '.join(definition)} can be changed only in draft; experiment {key!r} "
                    f"is {row['status']}. Create a new experiment instead."
                )
            if "policy" in changes and "sticky" not in changes:
                changes["sticky"] = default_sticky(changes["policy"])
            if changes.get("targeting") is None and "targeting" in changes:
                changes["targeting"] = []
            if "arms" not in changes and ("policy" in changes or "stages" in changes):
                # weights were derived from the old policy/stages: derive again
                changes["arms"] = [msgspec.structs.replace(a, weight=None) for a in current.arms]
            if "arms" not in changes and current.policy != "rollout":
                pass
            merged = msgspec.structs.replace(current, **changes)
            if "stages" in changes and changes["stages"] is None:
                merged = msgspec.structs.replace(merged, stages=None)
            spec = validate_spec(merged)
            await conn.execute(
                Q["experiment_update_definition"],
                row["id"],
                spec.name,
                spec.description,
                spec.policy,
                spec.sticky,
                _encoder.encode(spec).decode(),
            )
            if definition:
                await self._write_definition(conn, row["id"], spec, "definition changed")
            await audit(conn, actor, key, "update", {"fields": sorted(changes)})
        await self._publish(row["id"])
        return await self.get(key)

    async def delete(self, key: str, actor: str) -> None:
        """Delete an experiment that is not running or paused, with all its data."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["experiment_get_for_update"], key)
            if row is None:
                raise _not_found(key)
            if row["status"] in ("running", "paused"):
                raise Conflict(
                    f"Experiment {key!r} is {row['status']}; stop or roll it back before "
                    "deleting it (running → deleted is not allowed)."
                )
            await conn.execute(Q["experiment_delete"], row["id"])
            version = await conn.fetchval(Q["change_version_next"])
            await audit(conn, actor, key, "delete", {"status": row["status"]})
        await publish_policy(self.redis, self.keys, PolicyRemoved(key=key, version=version))
        if self.local is not None:
            self.local.remove(key, version)

    async def transition(
        self, key: str, action: str, actor: str, *, winner: str | None = None
    ) -> ExperimentOut:
        """Apply a lifecycle action; an illegal one is a 409 naming both states."""
        allowed, target = TRANSITIONS[action]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["experiment_get_for_update"], key)
            if row is None:
                raise _not_found(key)
            status = row["status"]
            if status not in allowed:
                raise Conflict(
                    f"Cannot {action} experiment {key!r}: it is {status}, and {action} moves "
                    f"{' or '.join(allowed)} → {target} ({status} → {target} is not allowed)."
                )
            spec = _spec_decoder.decode(row["settings"])
            winner_index = row["winner_index"]
            ended_status = row["ended_status"]
            details: dict[str, Any] = {"from": status, "to": target}
            if action == "stop":
                if winner is not None:
                    found = [i for i, a in enumerate(spec.arms) if a.key == winner]
                    if not found:
                        raise Invalid(
                            f"Unknown winner {winner!r}; arms are: "
                            f"{', '.join(a.key for a in spec.arms)}.",
                            extra=[field_error("winner", "must be one of the experiment's arms")],
                        )
                    winner_index = found[0]
                else:
                    winner_index = spec.control_index
                details["winner"] = spec.arms[winner_index].key
                ended_status = "completed"
            elif action == "rollback":
                winner_index = None
                ended_status = "rolled_back"
            await conn.execute(
                Q["experiment_set_status"],
                row["id"],
                target,
                ended_status,
                winner_index,
                f"{action} by {actor}",
            )
            if action in ("stop", "rollback"):
                served = winner_index if action == "stop" else spec.control_index
                assert served is not None
                weights = [1.0 if i == served else 0.0 for i in range(len(spec.arms))]
                await conn.execute(
                    Q["allocation_insert"],
                    row["id"],
                    weights,
                    f"{action}: serving {spec.arms[served].key} to everyone",
                )
            await audit(conn, actor, key, action, details)
        await self._publish(row["id"])
        logger.info("experiment %s key=%s %s→%s actor=%s", action, key, status, target, actor)
        return await self.get(key)

    async def allocations(self, key: str) -> list[AllocationOut]:
        """The allocation history, oldest first."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["experiment_get"], key)
            if row is None:
                raise _not_found(key)
            spec = _spec_decoder.decode(row["settings"])
            rows = await conn.fetch(Q["allocation_history"], row["id"])
        names = [a.key for a in spec.arms]
        return [
            AllocationOut(
                at=r["created_at"],
                weights=dict(zip(names, r["weights"], strict=True)),
                reason=r["reason"],
            )
            for r in rows
        ]

    async def audit_log(self, experiment: str | None, limit: int) -> list[AuditOut]:
        """Audit entries, newest first."""
        rows = await self.pool.fetch(Q["audit_list"], experiment, limit)
        return [
            AuditOut(
                id=r["id"],
                at=r["at"],
                actor=r["actor"],
                experiment=r["experiment_key"],
                action=r["action"],
                details=msgspec.json.decode(r["details"]),
            )
            for r in rows
        ]
