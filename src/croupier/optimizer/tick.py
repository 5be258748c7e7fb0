"""One optimizer step for one running experiment: evaluate, decide, change, alert.

`plan` is the decision, a pure function of the evaluation (what the statistics say and what
the recommendation is) and the experiment's state; `tick` reads, plans and applies. In order:

1. guardrail rollback (every policy, whether or not `auto_stop` is on): a breached arm gets
   weight 0 and is remembered as disabled, the others take its weight in equal parts; a
   `rollout`, or an experiment left with the control alone, ends `rolled_back` serving the
   control;
2. stop (only with `auto_stop`): `completed`, the winner recorded; with `auto_promote` the
   winner is served to everyone, without it the control is (and the winner is only named in the
   status reason and the audit entry);
3. `rollout` stage change: the candidate's share becomes the next stage's;
4. `thompson` reallocation after burn-in: weights from P(best) (or top-two) with the additive
   floor and the per-cycle change cap, written only when some weight moves meaningfully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import msgspec
import numpy as np
import redis.asyncio as aioredis

from croupier.decision.policy_cache import PolicyCache
from croupier.model import PRIMARY_METRIC, ExperimentSpec
from croupier.optimizer.alerts import AlertSender, alert_body
from croupier.optimizer.analysis import RawStats
from croupier.optimizer.evaluate import evaluate
from croupier.optimizer.publish import Change, apply_change
from croupier.optimizer.rollout import stage_change
from croupier.settings import Settings
from croupier.stats.report import MetricReport
from croupier.stats.thompson import Allocation, apply_floor, cap_change, thompson_allocation
from croupier.storage.redis_keys import RedisKeys

logger = logging.getLogger("croupier.optimizer.tick")

_spec_decoder = msgspec.json.Decoder(ExperimentSpec)


class RecommendationLike(Protocol):
    """What the optimizer reads of `optimizer.recommend.Recommendation`."""

    @property
    def action(self) -> str: ...
    @property
    def arm(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def next_stage(self) -> int | None: ...
    @property
    def rollback_arms(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class RunningExperiment:
    """A running experiment as one cycle lists it (`optimizer_running`)."""

    id: int
    key: str
    spec: ExperimentSpec
    allocation_id: int
    stage_index: int | None
    stage_started_at: datetime | None
    disabled_arms: frozenset[int]

    @classmethod
    def from_row(cls, row: Any) -> RunningExperiment:
        """Build from an `optimizer_running` row."""
        return cls(
            id=row["id"],
            key=row["key"],
            spec=_spec_decoder.decode(row["settings"]),
            allocation_id=row["allocation_id"],
            stage_index=row["stage_index"],
            stage_started_at=row["stage_started_at"],
            disabled_arms=frozenset(row["disabled_arms"] or ()),
        )


@dataclass
class TickContext:
    """What a tick needs: connections, this process's snapshot, settings, alerts, randomness."""

    pool: asyncpg.Pool
    redis: aioredis.Redis | None
    redis_keys: RedisKeys
    settings: Settings
    rng: np.random.Generator
    cache: PolicyCache | None = None
    alerts: AlertSender | None = None
    srm_alerted: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did: the change planned (None: nothing to do) and whether it was written."""

    key: str
    change: Change | None
    applied: bool
    reason: str


def _index(spec: ExperimentSpec, arm: str | None) -> int | None:
    return next((i for i, a in enumerate(spec.arms) if a.key == arm), None)


def one_hot(k: int, index: int) -> list[float]:
    """All traffic to one arm."""
    return [1.0 if i == index else 0.0 for i in range(k)]


def without_arms(weights: list[float], removed: set[int]) -> list[float]:
    """Weights with `removed` arms at 0 and their total shared equally (additively) by the rest."""
    keep = [i for i in range(len(weights)) if i not in removed]
    if not keep:
        raise ValueError("cannot remove every arm")
    freed = sum(weights[i] for i in removed)
    kept_total = sum(weights[i] for i in keep)
    out = [0.0] * len(weights)
    for i in keep:
        out[i] = weights[i] + freed / len(keep)
    total = kept_total + freed
    if total <= 0.0:  # nothing in force (should not happen): equal split of the rest
        return [1.0 / len(keep) if i in keep else 0.0 for i in range(len(weights))]
    return [w / total for w in out]


def thompson_change(
    exp: RunningExperiment,
    raw: RawStats,
    settings: Settings,
    rng: np.random.Generator,
    *,
    p_best: Sequence[float | None] | None = None,
    p_best_seed: int | None = None,
) -> Change | None:
    """A new `thompson` allocation after burn-in, or None (burn-in, or no meaningful change).

    `p_best` (and the seed of its draws), when the evaluation already computed it for every
    arm, is reused instead of drawing the posterior again — unless arms are disabled (P(best)
    must then be among the others) or top-two sampling is on.
    """
    spec = exp.spec
    k = len(spec.arms)
    survivors = [i for i in range(k) if i not in exp.disabled_arms]
    if len(survivors) < 2:
        return None
    if any(raw.exposures[i] < spec.min_exposures_per_arm for i in survivors):
        return None
    metric = spec.metric(PRIMARY_METRIC)
    assert metric is not None
    totals = raw.metrics[PRIMARY_METRIC]
    counts = [raw.exposures[i] if metric.type == "binary" else totals[i][0] for i in survivors]
    previous = [raw.weights[i] for i in survivors]
    allocation: Allocation | None = None
    if (
        p_best is not None
        and p_best_seed is not None
        and not exp.disabled_arms
        and not settings.optimizer_top_two
        and all(p is not None for p in p_best)
    ):
        raw_p = [float(p or 0.0) for p in p_best]
        target = apply_floor(raw_p, spec.min_arm_weight)
        old = np.clip(np.asarray(previous, dtype=np.float64), 0.0, None)
        if old.sum() > 0.0:
            old = old / old.sum()
        capped = cap_change(target, old, settings.optimizer_max_change_per_cycle)
        allocation = Allocation(
            weights=tuple(float(x) for x in capped),
            target=tuple(float(x) for x in target),
            raw=tuple(raw_p),
            seed=p_best_seed,
        )
    allocation = allocation or thompson_allocation(
        metric_type=metric.type,
        direction=metric.direction,
        count=counts,
        sums=[totals[i][1] for i in survivors],
        sums_sq=[totals[i][2] for i in survivors],
        min_arm_weight=spec.min_arm_weight,
        rng=rng,
        previous=previous,
        max_change=settings.optimizer_max_change_per_cycle,
        top_two=settings.optimizer_top_two,
    )
    weights = [0.0] * k
    for j, i in enumerate(survivors):
        weights[i] = allocation.weights[j]
    moved = max(abs(a - b) for a, b in zip(weights, raw.weights, strict=True))
    if moved < settings.optimizer_min_weight_change:
        return None
    method = "top-two Thompson" if settings.optimizer_top_two else "P(best)"
    best = max(range(k), key=lambda i: weights[i])
    return Change(
        experiment_id=exp.id,
        key=exp.key,
        kind="reallocate",
        based_on_allocation_id=exp.allocation_id,
        weights=weights,
        reason=f"thompson: weights from {method}; {spec.arms[best].key} leads "
        f"with {weights[best]:.3f}",
        details={
            "seed": allocation.seed,
            "raw": None if allocation.raw is None else [round(x, 6) for x in allocation.raw],
            "target": [round(x, 6) for x in allocation.target],
        },
    )


def plan(
    exp: RunningExperiment,
    raw: RawStats,
    recommendation: RecommendationLike,
    settings: Settings,
    rng: np.random.Generator,
    *,
    now: datetime,
    primary: MetricReport | None = None,
) -> Change | None:
    """The one change to make this cycle, or None (`primary`: the evaluation's report, whose
    P(best) a thompson reallocation reuses)."""
    spec = exp.spec
    k = len(spec.arms)
    control = spec.control_index
    action = recommendation.action

    if action == "rollback":
        breached = {_index(spec, a) for a in recommendation.rollback_arms}
        if recommendation.arm is not None:
            breached.add(_index(spec, recommendation.arm))
        new = {i for i in breached if i is not None and i != control} - exp.disabled_arms
        if new:
            disabled = exp.disabled_arms | new
            names = ", ".join(spec.arms[i].key for i in sorted(new))
            if spec.policy == "rollout" or len(disabled) >= k - 1:
                return Change(
                    experiment_id=exp.id,
                    key=exp.key,
                    kind="rollback",
                    based_on_allocation_id=exp.allocation_id,
                    weights=one_hot(k, control),
                    reason=f"rolled back {names}: {recommendation.reason}; serving the control",
                    status="rolled_back",
                    disabled_arms=sorted(disabled),
                    details={"arms": sorted(spec.arms[i].key for i in new)},
                )
            return Change(
                experiment_id=exp.id,
                key=exp.key,
                kind="rollback_arms",
                based_on_allocation_id=exp.allocation_id,
                weights=without_arms(list(raw.weights), set(disabled)),
                reason=f"rolled back {names}: {recommendation.reason}",
                disabled_arms=sorted(disabled),
                details={"arms": sorted(spec.arms[i].key for i in new)},
            )

    if action == "stop" and spec.auto_stop:
        winner = _index(spec, recommendation.arm)
        finished_rollout = (
            spec.policy == "rollout"
            and spec.stages is not None
            and exp.stage_index == len(spec.stages) - 1
            and winner is not None
            and winner != control
        )
        if winner is not None and (spec.auto_promote or finished_rollout):
            served, recorded = winner, winner
            tail = f"serving {spec.arms[winner].key} to everyone"
        else:
            served, recorded = control, None
            tail = (
                f"{spec.arms[winner].key} is best, auto_promote is off: serving the control"
                if winner is not None
                else "no winner: serving the control"
            )
        return Change(
            experiment_id=exp.id,
            key=exp.key,
            kind="stop",
            based_on_allocation_id=exp.allocation_id,
            weights=one_hot(k, served),
            reason=f"stopped: {recommendation.reason}; {tail}",
            status="completed",
            winner_index=recorded,
            details={
                "winner": None if winner is None else spec.arms[winner].key,
                "promoted": recorded is not None,
            },
        )

    step = (
        stage_change(spec.stages, exp.stage_index, recommendation.next_stage, control_index=control)
        if spec.policy == "rollout" and spec.stages
        else None
    )
    if step is not None:
        assert spec.stages is not None
        return Change(
            experiment_id=exp.id,
            key=exp.key,
            kind="stage",
            based_on_allocation_id=exp.allocation_id,
            weights=step.weights,
            reason=f"stage {step.stage_index + 1} of {len(spec.stages)}: candidate share "
            f"{step.share:g} ({recommendation.reason})",
            stage=(step.stage_index, now, sum(raw.exposures)),
            details={"stage": step.stage_index, "share": step.share},
        )

    if spec.policy == "thompson":
        return thompson_change(
            exp,
            raw,
            settings,
            rng,
            p_best=None if primary is None else [a.p_best for a in primary.arms],
            p_best_seed=None if primary is None else primary.seed,
        )
    return None


_ALERT_EVENTS = {
    "stop": "stop",
    "rollback": "rollback",
    "rollback_arms": "rollback",
    "stage": "stage",
}


async def tick(ctx: TickContext, exp: RunningExperiment, *, now: datetime) -> TickResult:
    """Evaluate one experiment and apply what the optimizer decides."""
    evaluation = await evaluate(ctx.pool, exp.key, rng=ctx.rng, persist=True, now=now)
    raw = evaluation.raw
    srm = evaluation.primary.srm
    if srm.flag and exp.id not in ctx.srm_alerted:
        ctx.srm_alerted.add(exp.id)
        logger.warning("sample ratio mismatch key=%s p=%.3g", exp.key, srm.p_value)
        if ctx.alerts is not None:
            ctx.alerts.send(
                exp.spec.alerts_url,
                alert_body(
                    event="srm",
                    experiment=exp.key,
                    at=now,
                    reason=f"sample ratio mismatch: p = {srm.p_value:.3g} < 0.001",
                    p_value=srm.p_value,
                ),
            )
    args = (exp, raw, evaluation.recommendation, ctx.settings, ctx.rng)
    if exp.spec.policy == "thompson" and (exp.disabled_arms or ctx.settings.optimizer_top_two):
        # a fresh Monte Carlo draw takes milliseconds: keep it off the hot path's event loop
        change = await asyncio.to_thread(
            functools.partial(plan, *args, now=now, primary=evaluation.primary)
        )
    else:
        change = plan(*args, now=now, primary=evaluation.primary)
    if change is None:
        return TickResult(exp.key, None, False, evaluation.recommendation.reason)
    applied = await apply_change(ctx.pool, ctx.redis, ctx.redis_keys, change, local=ctx.cache)
    if applied:
        logger.info("optimizer %s key=%s reason=%s", change.kind, exp.key, change.reason)
        event = _ALERT_EVENTS.get(change.kind)
        if event is not None and ctx.alerts is not None:
            ctx.alerts.send(
                exp.spec.alerts_url,
                alert_body(
                    event=event,
                    experiment=exp.key,
                    at=now,
                    reason=change.reason,
                    weights=dict(
                        zip([a.key for a in exp.spec.arms], change.weights or [], strict=False)
                    ),
                    status=change.status or "running",
                    **change.details,
                ),
            )
    return TickResult(exp.key, change, applied, change.reason)
