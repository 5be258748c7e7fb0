"""One evaluation of an experiment: statistics, stored sequential state and recommendation.

:func:`evaluate` is what the results endpoint and the optimizer both call. It reads the raw
sufficient statistics in one snapshot (:func:`croupier.optimizer.analysis.read_raw_stats`),
runs the pure statistics core for the primary metric ``reward`` and for every guardrail
(a metric other than ``reward`` with ``max_degradation`` or ``max_relative_degradation``),
folds the new always-valid p-values into the stored running minima and computes the
recommendation (:func:`croupier.optimizer.recommend.recommend`).

The sequential p-values are merged in PostgreSQL with ``LEAST`` under the row locks and the
merged values are what is reported, so across calls and processes the reported sequential
p-value of a comparison never increases.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np

from croupier.admin.schemas import (
    ArmResult,
    ComparisonResult,
    GuardrailResult,
    MetricArms,
    MetricInfo,
    RecommendationOut,
    ResultsOut,
    SrmOut,
)
from croupier.model import PRIMARY_METRIC, Metric
from croupier.optimizer.analysis import (
    KIND_GUARDRAIL,
    KIND_TWO_SIDED,
    RawStats,
    arm_data,
    read_raw_stats,
)
from croupier.optimizer.recommend import Recommendation, recommend, uses_p_best
from croupier.stats.report import (
    AnalyzeInput,
    Comparison,
    GuardrailCheck,
    GuardrailInput,
    MetricReport,
    analyze_many,
    guardrail_many,
)
from croupier.stats.sequential import SequentialState
from croupier.storage.queries import Q


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation.

    Attributes:
        raw: the sufficient statistics it was computed from.
        primary: the report of the primary metric ``reward`` (sequential p-values merged with
            the stored running minima when persisted).
        guardrails: guardrail metric name → one check per non-control arm.
        recommendation: what to do now.
        computed_at: the time of the statistics snapshot.
    """

    raw: RawStats
    primary: MetricReport
    guardrails: dict[str, tuple[GuardrailCheck, ...]]
    recommendation: Recommendation
    computed_at: datetime


def guardrail_metrics(raw: RawStats) -> list[Metric]:
    """The experiment's guardrails: metrics other than `reward` that have a tolerance."""
    return [
        m for m in raw.spec.metrics
        if m.name != PRIMARY_METRIC
        and (m.max_degradation is not None or m.max_relative_degradation is not None)
    ]


def _stored(raw: RawStats, metric: str, kind: str) -> list[float | None] | None:
    """The stored p-values (running minima) of one metric's comparisons, per arm (None where
    nothing is stored), as the statistics' sequential states."""
    return raw.sequential.get((metric, kind))


Checks = dict[str, tuple[GuardrailCheck, ...]]
"""Guardrail metric name → one check per non-control arm."""


def compute(
    raw: RawStats, rng: np.random.Generator, *, integrate: bool = False
) -> tuple[MetricReport, Checks]:
    """The CPU part: the primary report and the guardrail checks (pure).

    ``integrate``: P(best) by numerical integration instead of Monte Carlo draws (the
    optimizer's cycle; `GET …/results` draws).
    """
    (result,) = compute_many([raw], rng, integrate=integrate)
    if isinstance(result, Exception):
        raise result
    return result


def compute_many(
    raws: Sequence[RawStats],
    rng: np.random.Generator,
    *,
    integrate: bool = False,
    p_best_where_used: bool = False,
) -> list[tuple[MetricReport, Checks] | Exception]:
    """:func:`compute` for many experiments at once (the optimizer's cycle): the statistics
    are vectorised across all of them (:func:`~croupier.stats.report.analyze_many`,
    :func:`~croupier.stats.report.guardrail_many`) and each result is the same as `compute`
    gives it alone, in this order with this ``rng``. An experiment whose statistics fail gets
    its exception in its place; the others are not affected.

    ``p_best_where_used``: P(best) and expected loss only for experiments whose recommendation
    can read them (:func:`~croupier.optimizer.recommend.uses_p_best`); the others' are None.
    """
    out: list[tuple[MetricReport, Checks] | Exception | None] = [None] * len(raws)
    primary_inputs: list[AnalyzeInput] = []
    primary_of: list[int] = []
    guard_inputs: list[GuardrailInput] = []
    guard_of: list[tuple[int, str]] = []
    for i, raw in enumerate(raws):
        try:
            primary_input, guards = _inputs(
                raw, p_best=not p_best_where_used or uses_p_best(raw.spec)
            )
        except Exception as exc:  # a broken definition or snapshot: this experiment only
            out[i] = exc
            continue
        primary_inputs.append(primary_input)
        primary_of.append(i)
        guard_inputs += [g for _, g in guards]
        guard_of += [(i, name) for name, _ in guards]
    primaries = analyze_many(primary_inputs, rng=rng, integrate=integrate)
    guards_out = guardrail_many(guard_inputs)
    checks_of: dict[int, Checks] = {}
    failed: dict[int, Exception] = {}
    for (i, name), result in zip(guard_of, guards_out, strict=True):
        if isinstance(result, Exception):
            failed.setdefault(i, result)
        else:
            checks_of.setdefault(i, {})[name] = result
    for i, primary in zip(primary_of, primaries, strict=True):
        if isinstance(primary, Exception):
            out[i] = primary
        elif i in failed:
            out[i] = failed[i]
        else:
            out[i] = (primary, checks_of.get(i, {}))
    return [r for r in out if r is not None]


def _inputs(
    raw: RawStats, *, p_best: bool = True
) -> tuple[AnalyzeInput, list[tuple[str, GuardrailInput]]]:
    """The statistics' inputs of one experiment: its primary metric and its guardrails."""
    spec = raw.spec
    alpha = 1.0 - spec.confidence_level
    control = spec.control_index
    primary_metric = spec.metric(PRIMARY_METRIC)
    assert primary_metric is not None
    totals = raw.metrics[PRIMARY_METRIC]
    primary = AnalyzeInput(
        metric_type=primary_metric.type,
        direction=primary_metric.direction,
        alpha=alpha,
        control=control,
        exposures=raw.exposures,
        expected_exposures=raw.expected_exposures,
        count=[t[0] for t in totals],
        sums=[t[1] for t in totals],
        sums_sq=[t[2] for t in totals],
        sequential_states=_stored(raw, PRIMARY_METRIC, KIND_TWO_SIDED),
        p_best=p_best,
    )
    guards: list[tuple[str, GuardrailInput]] = []
    for m in guardrail_metrics(raw):
        g = raw.metrics[m.name]
        guards.append(
            (
                m.name,
                GuardrailInput(
                    metric_type=m.type,
                    direction=m.direction,
                    alpha=alpha,
                    control=control,
                    count=raw.exposures if m.type == "binary" else [t[0] for t in g],
                    sums=[t[1] for t in g],
                    sums_sq=[t[2] for t in g],
                    sequential_states=_stored(raw, m.name, KIND_GUARDRAIL),
                    max_degradation=m.max_degradation,
                    max_relative_degradation=m.max_relative_degradation,
                ),
            )
        )
    return primary, guards


async def _persist(
    pool: asyncpg.Pool,
    raw: RawStats,
    primary: MetricReport,
    checks: dict[str, tuple[GuardrailCheck, ...]],
) -> tuple[MetricReport, dict[str, tuple[GuardrailCheck, ...]]]:
    """Fold the new p-values into the stored running minima; report the merged values."""
    rows = _sequential_rows(primary, checks)
    if not rows:
        return primary, checks
    metrics, arms, kinds, p_values = (list(col) for col in zip(*rows, strict=True))
    async with pool.acquire() as conn:
        merged_rows = await conn.fetch(
            Q["sequential_merge"], raw.experiment_id, metrics, arms, kinds, p_values
        )
    merged = {(r["metric"], r["arm_index"], r["kind"]): r["p_value"] for r in merged_rows}
    return fold(primary, checks, merged)


def _sequential_rows(primary: MetricReport, checks: Checks) -> list[tuple[str, int, str, float]]:
    """(metric, arm, kind, p-value) of every sequential test of one evaluation."""
    rows: list[tuple[str, int, str, float]] = [
        (PRIMARY_METRIC, c.arm, KIND_TWO_SIDED, c.sequential_p_value) for c in primary.comparisons
    ]
    for name, per_arm in checks.items():
        rows += [(name, c.arm, KIND_GUARDRAIL, c.sequential_p_value) for c in per_arm]
    return rows


SequentialStored = dict[tuple[str, str], list[float | None]]
"""(metric, kind) → per arm the stored running minimum (None: nothing stored), as in RawStats."""


async def persist_many(
    pool: asyncpg.Pool, evaluated: list[tuple[RawStats, MetricReport, Checks]]
) -> list[tuple[MetricReport, Checks, SequentialStored]]:
    """`_persist` for many experiments in one statement (the optimizer's cycle).

    Only new comparisons and p-values below the running minimum stored at the snapshot are
    written (any other would leave its row as it is). Returns, per input, the merged report
    and checks and the sequential state now stored (what the next snapshot should read if
    nobody else writes).
    """
    ids: list[int] = []
    metrics: list[str] = []
    arms: list[int] = []
    kinds: list[str] = []
    p_values: list[float] = []
    for raw, primary, checks in evaluated:
        for metric, arm, kind, p in _sequential_rows(primary, checks):
            per_arm = raw.sequential.get((metric, kind))
            stored = None if per_arm is None else per_arm[arm]
            if stored is None or not math.isfinite(stored) or p < stored:
                ids.append(raw.experiment_id)
                metrics.append(metric)
                arms.append(arm)
                kinds.append(kind)
                p_values.append(p)
    written: dict[int, list[tuple[str, int, str, float]]] = {}
    if ids:
        async with pool.acquire() as conn:
            rows = await conn.fetch(Q["sequential_merge_many"], ids, metrics, arms, kinds, p_values)
        for r in rows:
            written.setdefault(r["experiment_id"], []).append(
                (r["metric"], r["arm_index"], r["kind"], r["p_value"])
            )
    out: list[tuple[MetricReport, Checks, SequentialStored]] = []
    for raw, primary, checks in evaluated:
        merged: dict[tuple[str, int, str], float] = {}
        state: SequentialStored = {key: list(per_arm) for key, per_arm in raw.sequential.items()}
        for (metric, kind), per_arm in raw.sequential.items():
            for arm, stored in enumerate(per_arm):
                if stored is not None:
                    merged[(metric, arm, kind)] = stored
        for metric, arm, kind, p in written.get(raw.experiment_id, []):
            merged[(metric, arm, kind)] = p
            state.setdefault((metric, kind), [None] * len(raw.spec.arms))[arm] = p
        folded_primary, folded_checks = fold(primary, checks, merged)
        out.append((folded_primary, folded_checks, state))
    return out


def fold(
    primary: MetricReport, checks: Checks, merged: dict[tuple[str, int, str], float]
) -> tuple[MetricReport, Checks]:
    """The report with each sequential p-value folded into its stored running minimum.

    Comparisons whose p-value the stored minimum does not lower are kept as they are (the
    usual case: the report was computed from the state stored at its snapshot)."""
    alpha = primary.alpha

    def lowest(metric: str, arm: int, kind: str, p: float) -> float:
        stored = merged.get((metric, arm, kind))
        return p if stored is None or not math.isfinite(stored) else min(p, stored)

    comparisons: list[Comparison] = []
    for c in primary.comparisons:
        p = lowest(PRIMARY_METRIC, c.arm, KIND_TWO_SIDED, c.sequential_p_value)
        comparisons.append(
            c
            if p == c.sequential_p_value
            else dataclasses.replace(
                c, sequential_p_value=p, significant=p < alpha, state=SequentialState(p)
            )
        )
    if any(new is not old for new, old in zip(comparisons, primary.comparisons, strict=True)):
        states = list(primary.sequential_states)
        for c in comparisons:
            states[c.arm] = c.state
        primary = dataclasses.replace(
            primary, comparisons=tuple(comparisons), sequential_states=tuple(states)
        )
    new_checks: dict[str, tuple[GuardrailCheck, ...]] = {}
    for name, per_arm in checks.items():
        folded: list[GuardrailCheck] = []
        for g in per_arm:
            p = lowest(name, g.arm, KIND_GUARDRAIL, g.sequential_p_value)
            folded.append(
                g
                if p == g.sequential_p_value
                else dataclasses.replace(
                    g, sequential_p_value=p, breached=p < alpha, state=SequentialState(p)
                )
            )
        new_checks[name] = tuple(folded)
    return primary, new_checks


async def evaluate(
    pool: asyncpg.Pool,
    key: str,
    *,
    rng: np.random.Generator | None = None,
    persist: bool = True,
    now: datetime | None = None,
) -> Evaluation:
    """Evaluate experiment `key` now: statistics, merged sequential state, recommendation.

    ``rng`` only seeds the Monte Carlo behind P(best) (a fresh ``np.random.default_rng()``
    when None; the seed used is in ``primary.seed``). With ``persist`` false the stored
    sequential state is read but not updated. ``now`` (default: the snapshot time) is the
    clock the recommendation's duration rules use. Raises NotFound for an unknown key.
    """
    raw = await read_raw_stats(pool, key)
    generator = rng if rng is not None else np.random.default_rng()
    # the Monte Carlo and the tests take milliseconds: keep them off the event loop, which
    # also serves the decision hot path
    primary, checks = await asyncio.to_thread(compute, raw, generator)
    if persist:
        primary, checks = await _persist(pool, raw, primary, checks)
    rec = recommend(
        spec=raw.spec,
        status=raw.status,
        primary=primary,
        guardrails=checks,
        exposures=raw.exposures,
        stage_index=raw.stage_index,
        stage_started_at=raw.stage_started_at,
        started_at=raw.started_at,
        now=now if now is not None else raw.computed_at,
        stage_exposures=raw.stage_exposures,
        disabled_arms=raw.disabled_arms,
    )
    return Evaluation(
        raw=raw,
        primary=primary,
        guardrails=checks,
        recommendation=rec,
        computed_at=raw.computed_at,
    )


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


def results_out(ev: Evaluation) -> ResultsOut:
    """The `GET /v1/experiments/{key}/results` document of an evaluation (SPEC §3)."""
    raw, primary = ev.raw, ev.primary
    spec = raw.spec
    keys = [a.key for a in spec.arms]
    control = spec.control_index
    metric = spec.metric(PRIMARY_METRIC)
    assert metric is not None
    arms = [
        ArmResult(
            arm=keys[a.arm],
            control=a.arm == control,
            weight=raw.weights[a.arm],
            exposures=a.exposures,
            expected_exposures=a.expected_exposures,
            count=a.count,
            sum=a.sum,
            mean=a.mean,
            std=a.std,
            ci=_ci(a.ci),
            p_best=a.p_best,
            expected_loss=a.expected_loss,
        )
        for a in primary.arms
    ]
    comparisons = [
        ComparisonResult(
            arm=keys[c.arm],
            vs=keys[c.control],
            diff=c.diff,
            diff_ci=_ci(c.diff_ci),
            lift=c.lift,
            p_value=c.p_value,
            p_value_adjusted=c.p_value_adjusted,
            sequential_p_value=c.sequential_p_value,
            significant=c.significant,
        )
        for c in primary.comparisons
    ]
    guardrails = [
        GuardrailResult(
            metric=name,
            arm=keys[c.arm],
            vs=keys[c.control],
            diff=c.diff,
            p_value=c.p_value,
            sequential_p_value=c.sequential_p_value,
            breached=c.breached,
        )
        for name, checks in ev.guardrails.items()
        for c in checks
    ]
    rec = ev.recommendation
    return ResultsOut(
        experiment=spec.key,
        status=raw.status,  # type: ignore[arg-type]
        policy=spec.policy,
        confidence_level=spec.confidence_level,
        computed_at=ev.computed_at,
        metric=MetricInfo(name=metric.name, type=metric.type, direction=metric.direction),
        arms=arms,
        comparisons=comparisons,
        guardrails=guardrails,
        srm=SrmOut(p_value=primary.srm.p_value, flag=primary.srm.flag),
        recommendation=RecommendationOut(action=rec.action, arm=rec.arm, reason=rec.reason),
        seed=primary.seed,
        metrics={
            m.name: MetricArms(
                type=m.type,
                direction=m.direction,
                arms=arms if m.name == PRIMARY_METRIC else arm_data(raw, m),
            )
            for m in spec.metrics
        },
    )
