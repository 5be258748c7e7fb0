"""The raw material of an experiment's results: sufficient statistics read from PostgreSQL.

:func:`read_raw_stats` reads, in one repeatable-read snapshot, everything the statistics are
computed from: per-arm exposures and expected exposures, per-metric running totals, the stored
sequential states and the experiment's lifecycle and rollout state. The statistics themselves
are computed by :mod:`croupier.optimizer.evaluate` with the pure core in :mod:`croupier.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec

from croupier.admin.schemas import ArmResult
from croupier.errors import NotFound
from croupier.model import ExperimentSpec, Metric
from croupier.stats.significance import t_interval, wilson_interval
from croupier.storage.queries import Q

_spec_decoder = msgspec.json.Decoder(ExperimentSpec)

KIND_TWO_SIDED = "two_sided"
"""`sequential_state.kind` of a primary-metric comparison."""
KIND_GUARDRAIL = "guardrail"
"""`sequential_state.kind` of a guardrail check."""


@dataclass(frozen=True, slots=True)
class RawStats:
    """Everything the statistics are computed from, read in one repeatable-read snapshot.

    Attributes:
        experiment_id: the experiment's row id.
        spec: its definition.
        status: lifecycle status at the snapshot.
        weights: the allocation in force, per arm.
        exposures: counted decisions per arm.
        expected_exposures: per arm, Σ over counted decisions of its weight at decision time.
        metrics: metric name → per arm (n, sum, sum_sq) of the rewards reported.
        sequential: (metric, kind) → per arm the stored always-valid p-value (None when none is
            stored yet, and for the control).
        stage_index: the rollout stage in force (None for other policies).
        stage_started_at: when that stage began (None before the start).
        started_at: when the experiment was first started (None in draft).
        stage_exposures: exposures of both arms since the current stage began.
        disabled_arms: arms the optimizer rolled back on a guardrail (weight kept at 0).
        computed_at: the time of the snapshot.
    """

    experiment_id: int
    spec: ExperimentSpec
    status: str
    weights: list[float]
    exposures: list[int]
    expected_exposures: list[float]
    metrics: dict[str, list[tuple[int, float, float]]]
    sequential: dict[tuple[str, str], list[float | None]]
    stage_index: int | None
    stage_started_at: datetime | None
    started_at: datetime | None
    stage_exposures: int
    disabled_arms: frozenset[int]
    computed_at: datetime


async def read_raw_stats(pool: asyncpg.Pool, key: str) -> RawStats:
    """One consistent read of an experiment's sufficient statistics and sequential state."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # the first query fixes the snapshot; the clock is read just before it
        computed_at = datetime.now(UTC)
        row = await conn.fetchrow(Q["results_experiment"], key)
        if row is None:
            raise NotFound(f"No experiment with key {key!r}; list them with GET /v1/experiments.")
        experiment_id = row["id"]
        alloc = await conn.fetchrow(Q["allocation_current"], experiment_id)
        arms = await conn.fetch(Q["stats_arms"], experiment_id)
        metric_rows = await conn.fetch(Q["stats_metrics"], experiment_id)
        seq_rows = await conn.fetch(Q["sequential_states"], experiment_id)
    spec = _spec_decoder.decode(row["settings"])
    k = len(spec.arms)
    exposures = [0] * k
    expected = [0.0] * k
    for r in arms:
        if r["arm_index"] < k:
            exposures[r["arm_index"]] = r["exposures"]
            expected[r["arm_index"]] = r["expected_exposures"]
    metrics: dict[str, list[tuple[int, float, float]]] = {
        m.name: [(0, 0.0, 0.0)] * k for m in spec.metrics
    }
    for r in metric_rows:
        if r["metric"] in metrics and r["arm_index"] < k:
            metrics[r["metric"]][r["arm_index"]] = (r["n"], r["sum"], r["sum_sq"])
    sequential: dict[tuple[str, str], list[float | None]] = {}
    for r in seq_rows:
        if r["arm_index"] < k:
            per_arm = sequential.setdefault((r["metric"], r["kind"]), [None] * k)
            per_arm[r["arm_index"]] = r["p_value"]
    return RawStats(
        experiment_id=experiment_id,
        spec=spec,
        status=row["status"],
        weights=list(alloc["weights"]) if alloc is not None else [0.0] * k,
        exposures=exposures,
        expected_exposures=expected,
        metrics=metrics,
        sequential=sequential,
        stage_index=row["stage_index"],
        stage_started_at=row["stage_started_at"],
        started_at=row["started_at"],
        stage_exposures=max(0, sum(exposures) - (row["stage_exposures_base"] or 0)),
        disabled_arms=frozenset(row["disabled_arms"] or ()),
        computed_at=computed_at,
    )


def arm_data(raw: RawStats, metric: Metric) -> list[ArmResult]:
    """Per-arm count, sum, mean, std and interval of one metric (SPEC §3 definitions)."""
    out: list[ArmResult] = []
    control = raw.spec.control_index
    alpha = 1.0 - raw.spec.confidence_level
    for i, arm in enumerate(raw.spec.arms):
        n_rewards, total, total_sq = raw.metrics[metric.name][i]
        exposures = raw.exposures[i]
        mean: float | None
        std: float | None
        ci: tuple[float, float] | None = None
        if metric.type == "binary":
            count = exposures
            mean = min(1.0, max(0.0, total / exposures)) if exposures > 0 else None
            std = math.sqrt(max(mean * (1.0 - mean), 0.0)) if mean is not None else None
            ci = wilson_interval(min(total, exposures), exposures, alpha=alpha)
        else:
            count = n_rewards
            mean = total / n_rewards if n_rewards > 0 else None
            if n_rewards > 1 and mean is not None:
                var = max((total_sq - total * mean) / (n_rewards - 1), 0.0)
                std = math.sqrt(var)
                ci = t_interval(mean, std, n_rewards, alpha=alpha)
            else:
                std = None
        finite_ci = ci is not None and all(math.isfinite(x) for x in ci)
        out.append(
            ArmResult(
                arm=arm.key,
                control=i == control,
                weight=raw.weights[i],
                exposures=exposures,
                expected_exposures=raw.expected_exposures[i],
                count=count,
                sum=total,
                mean=mean if mean is not None and math.isfinite(mean) else None,
                std=std if std is not None and math.isfinite(std) else None,
                ci=list(ci) if ci is not None and finite_ci else None,
            )
        )
    return out
