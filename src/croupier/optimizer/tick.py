"""The optimizer's cycle: evaluate every running experiment, decide, change, alert.

`plan` is the decision for one experiment, a pure function of its evaluation (what the
statistics say and what the recommendation is) and its state; `run_cycle` reads every running
experiment at once, evaluates the ones whose statistics changed, plans each and applies the
changes. The plan, in order:

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
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from croupier.decision.policy_cache import PolicyCache
from croupier.model import PRIMARY_METRIC, ExperimentSpec
from croupier.optimizer.alerts import AlertSender, alert_body
from croupier.optimizer.analysis import RawStats, SpecCache, read_running_stats
from croupier.optimizer.evaluate import (
    Checks,
    Evaluation,
    SequentialStored,
    compute,
    compute_many,
    persist_many,
)
from croupier.optimizer.publish import Change, apply_changes
from croupier.optimizer.recommend import recommend
from croupier.optimizer.rollout import stage_change
from croupier.settings import Settings
from croupier.stats.report import MetricReport
from croupier.stats.thompson import Allocation, apply_floor, cap_change, thompson_allocation
from croupier.storage.redis_keys import RedisKeys

logger = logging.getLogger("croupier.optimizer.tick")

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
    """A running experiment as one cycle sees it (from its statistics snapshot)."""

    id: int
    key: str
    spec: ExperimentSpec
    allocation_id: int
    stage_index: int | None
    stage_started_at: datetime | None
    disabled_arms: frozenset[int]

    @classmethod
    def from_raw(cls, raw: RawStats) -> RunningExperiment:
        """Build from the cycle's statistics snapshot."""
        assert raw.allocation_id is not None
        return cls(
            id=raw.experiment_id,
            key=raw.spec.key,
            spec=raw.spec,
            allocation_id=raw.allocation_id,
            stage_index=raw.stage_index,
            stage_started_at=raw.stage_started_at,
            disabled_arms=raw.disabled_arms,
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
    seen: dict[int, _Seen] = field(default_factory=dict)
    specs: SpecCache = field(default_factory=SpecCache)
    last_phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step of the last cycle, and how many experiments it evaluated."""


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


@dataclass(frozen=True, slots=True)
class _Seen:
    """An experiment's last evaluation and the inputs it was computed from."""

    fingerprint: tuple[Any, ...]
    primary: MetricReport
    checks: Checks


def fingerprint(raw: RawStats, sequential: SequentialStored | None = None) -> tuple[Any, ...]:
    """Everything the statistics (`evaluate.compute`) depend on: equal fingerprints give equal
    statistics, so the cycle reuses them and re-runs only the recommendation and the plan,
    which also depend on the clock, the allocation in force and the rollout stage.

    One flat tuple: the definition, then the per-arm values in a fixed layout (the definition
    fixes the number of arms and the metrics; each stored sequential state is its key and one
    value per arm), so equal tuples mean equal inputs."""
    seq = raw.sequential if sequential is None else sequential
    parts: list[Any] = [raw.spec, *raw.exposures, *raw.expected_exposures]
    for name in sorted(raw.metrics):
        parts.append(name)
        for totals in raw.metrics[name]:
            parts += totals
    for key in sorted(seq):
        parts += key
        parts += seq[key]
    return tuple(parts)


@dataclass
class _Work:
    """One experiment's way through a cycle."""

    raw: RawStats
    exp: RunningExperiment
    primary: MetricReport | None = None
    checks: Checks | None = None
    evaluation: Evaluation | None = None
    change: Change | None = None
    error: BaseException | None = None


def _compute_all(work: list[_Work], rng: np.random.Generator) -> None:
    """The statistics of every experiment whose inputs changed, vectorised across all of them
    (CPU; run in a thread). One experiment's failure is logged and skipped."""
    try:
        results = compute_many(
            [w.raw for w in work], rng, integrate=True, p_best_where_used=True
        )
    except Exception:  # not one experiment's input: find out which, one at a time
        logger.exception("optimizer statistics failed for the batch; computing one at a time")
        for w in work:
            try:
                w.primary, w.checks = compute(w.raw, rng, integrate=True)
            except Exception as exc:
                w.error = exc
        return
    for w, result in zip(work, results, strict=True):
        if isinstance(result, Exception):
            w.error = result
        else:
            w.primary, w.checks = result


EVALUATE_CHUNK = 100
"""Experiments whose statistics a cycle computes at a time: the merge of one chunk's sequential
p-values (PostgreSQL's work) runs while the next chunk's statistics are computed."""


async def _persist(ctx: TickContext, chunk: list[_Work]) -> None:
    """Merge a computed chunk's sequential p-values; remember its evaluations."""
    computed = [w for w in chunk if w.error is None]
    if not computed:
        return
    assert all(w.primary is not None and w.checks is not None for w in computed)
    merged = await persist_many(
        ctx.pool, [(w.raw, w.primary, w.checks) for w in computed]  # type: ignore[misc]
    )
    for w, (primary, checks, stored) in zip(computed, merged, strict=True):
        w.primary, w.checks = primary, checks
        ctx.seen[w.raw.experiment_id] = _Seen(fingerprint(w.raw, stored), primary, checks)


async def _evaluate(
    ctx: TickContext,
    fresh: list[_Work],
    should_stop: Callable[[], bool],
    lap: Callable[[str], None],
) -> None:
    """Statistics of the `fresh` experiments, in chunks of :data:`EVALUATE_CHUNK` in order (so
    the rng is drawn in the same order and every result is the one a single batch gives), each
    chunk's merge overlapping the next chunk's statistics. Laps `compute_s` when the last
    statistics are done, `persist_s` when the last merge is (none once `should_stop`)."""
    pending: asyncio.Task[None] | None = None
    try:
        for start in range(0, len(fresh), EVALUATE_CHUNK):
            chunk = fresh[start : start + EVALUATE_CHUNK]
            await asyncio.to_thread(_compute_all, chunk, ctx.rng)
            if pending is not None:
                await pending
                pending = None
            if not should_stop():
                pending = asyncio.create_task(_persist(ctx, chunk))
        lap("compute_s")
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:  # cancelled, or the statistics failed: not left running
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
    lap("persist_s")


def _plan_all(
    work: list[_Work], settings: Settings, rng: np.random.Generator, now: datetime
) -> None:
    """Recommendation and plan of every experiment (CPU; run in a thread)."""
    for w in work:
        if w.error is not None:
            continue
        try:
            assert w.primary is not None and w.checks is not None
            raw = w.raw
            rec = recommend(
                spec=raw.spec,
                status=raw.status,
                primary=w.primary,
                guardrails=w.checks,
                exposures=raw.exposures,
                stage_index=raw.stage_index,
                stage_started_at=raw.stage_started_at,
                started_at=raw.started_at,
                now=now,
                stage_exposures=raw.stage_exposures,
                disabled_arms=raw.disabled_arms,
            )
            w.evaluation = Evaluation(
                raw=raw,
                primary=w.primary,
                guardrails=w.checks,
                recommendation=rec,
                computed_at=raw.computed_at,
            )
            w.change = plan(w.exp, raw, rec, settings, rng, now=now, primary=w.primary)
        except Exception as exc:
            w.error = exc


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (on again after, if it was on).

    A cycle allocates hundreds of thousands of objects, most of them alive until its end; the
    collector, triggered by allocation counts, scanned them (and the whole heap, one to two
    full collections per cycle) again and again: 0.15-0.25 s of a cycle. Reference counting
    still frees everything that is not in a reference cycle; the few cycles made meanwhile wait
    for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def run_cycle(
    ctx: TickContext, *, now: datetime, should_stop: Callable[[], bool] = lambda: False
) -> tuple[int, list[TickResult], int]:
    """One cycle over every running experiment: (experiments, results, failures); Python's
    cyclic garbage collector is paused meanwhile."""
    with _cyclic_gc_paused():
        return await _run_cycle(ctx, now=now, should_stop=should_stop)


async def _run_cycle(
    ctx: TickContext, *, now: datetime, should_stop: Callable[[], bool]
) -> tuple[int, list[TickResult], int]:
    """One cycle over every running experiment: (experiments, results, failures).

    1. one snapshot of every running experiment's statistics (four queries);
    2. the statistics of the experiments whose inputs changed since the last cycle (numerical
       P(best), in a worker thread); unchanged experiments reuse their last evaluation;
    3. the new sequential p-values, merged in one statement per chunk of
       :data:`EVALUATE_CHUNK` experiments while the next chunk's statistics are computed;
    4. recommendation and plan for every experiment (so the duration rules act on unchanged
       experiments too);
    5. the changes, written in batches (one transaction of a few statements each, then one
       Redis pipeline).
    """
    clock = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        t = time.perf_counter()
        phases[name] = round(t - clock, 4)
        clock = t

    raws = await read_running_stats(ctx.pool, ctx.specs)
    lap("read_s")
    work = [_Work(raw, RunningExperiment.from_raw(raw)) for raw in raws]
    ctx.seen = {w.raw.experiment_id: ctx.seen[w.raw.experiment_id]
                for w in work if w.raw.experiment_id in ctx.seen}
    fresh: list[_Work] = []
    for w in work:
        seen = ctx.seen.get(w.raw.experiment_id)
        if seen is not None and seen.fingerprint == fingerprint(w.raw):
            w.primary, w.checks = seen.primary, seen.checks
        else:
            fresh.append(w)
    await _evaluate(ctx, fresh, should_stop, lap)
    await asyncio.to_thread(_plan_all, work, ctx.settings, ctx.rng, now)
    lap("plan_s")

    for w in work:
        if w.error is not None:
            ctx.seen.pop(w.raw.experiment_id, None)
            logger.error(
                "optimizer tick failed key=%s; skipped this cycle",
                w.exp.key,
                exc_info=(type(w.error), w.error, w.error.__traceback__),
            )
        elif w.evaluation is not None:
            _alert_srm(ctx, w.exp, w.evaluation, now)
    changing = [w for w in work if w.error is None and w.change is not None]
    outcomes = await apply_changes(
        ctx.pool,
        ctx.redis,
        ctx.redis_keys,
        [w.change for w in changing if w.change is not None],
        local=ctx.cache,
        should_stop=should_stop,
    )
    outcome_of = {w.raw.experiment_id: o for w, o in zip(changing, outcomes, strict=True)}
    results: list[TickResult] = []
    for w in work:
        if w.error is not None:
            continue
        assert w.evaluation is not None
        if w.change is None:
            results.append(TickResult(w.exp.key, None, False, w.evaluation.recommendation.reason))
            continue
        outcome = outcome_of[w.raw.experiment_id]
        if outcome is None:  # stopping: not tried
            continue
        if isinstance(outcome, BaseException):
            w.error = outcome
            logger.error(
                "optimizer change failed key=%s; skipped this cycle",
                w.exp.key,
                exc_info=(type(outcome), outcome, outcome.__traceback__),
            )
            continue
        results.append(_applied(ctx, w.exp, w.change, outcome, now))
    lap("apply_s")
    phases["evaluated"] = len(fresh)
    ctx.last_phases = phases
    return len(raws), results, sum(1 for w in work if w.error is not None)


def _alert_srm(ctx: TickContext, exp: RunningExperiment, ev: Evaluation, now: datetime) -> None:
    srm = ev.primary.srm
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


def _applied(
    ctx: TickContext, exp: RunningExperiment, change: Change, applied: bool, now: datetime
) -> TickResult:
    """The result of one written (or dropped) change; a written one is logged and alerted."""
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
