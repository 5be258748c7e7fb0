"""The raw material of an experiment's results: sufficient statistics read from PostgreSQL.

:func:`read_raw_stats` reads, in one repeatable-read snapshot, everything the statistics are
computed from: per-arm exposures and expected exposures, per-metric running totals, the stored
sequential states and the experiment's lifecycle and rollout state. The statistics themselves
are computed by :mod:`croupier.optimizer.evaluate` with the pure core in :mod:`croupier.stats`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
        allocation_id: the id of the allocation in force (None when there is none).
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
    allocation_id: int | None = None


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
    return _raw_stats(
        row,
        _spec_decoder.decode(row["settings"]),
        None if alloc is None else (alloc["id"], list(alloc["weights"])),
        arms,
        metric_rows,
        seq_rows,
        computed_at,
    )


def _raw_stats(
    row: Any,
    spec: ExperimentSpec,
    allocation: tuple[int, list[float]] | None,
    arms: Sequence[Any],
    metric_rows: Sequence[Any],
    seq_rows: Sequence[Any],
    computed_at: datetime,
) -> RawStats:
    """A RawStats from the rows of one experiment (`allocation`: (id, weights) in force)."""
    experiment_id = row["id"]
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
        weights=allocation[1] if allocation is not None else [0.0] * k,
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
        allocation_id=allocation[0] if allocation is not None else None,
    )


class SpecCache:
    """Decoded experiment definitions, re-decoded only when the stored JSON changes."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, ExperimentSpec]] = {}

    def get(self, experiment_id: int, settings_json: str) -> ExperimentSpec:
        """The definition of `experiment_id` stored as `settings_json`."""
        cached = self._by_id.get(experiment_id)
        if cached is not None and cached[0] == settings_json:
            return cached[1]
        spec = _spec_decoder.decode(settings_json)
        self._by_id[experiment_id] = (settings_json, spec)
        return spec

    def keep(self, experiment_ids: set[int]) -> None:
        """Forget experiments not in `experiment_ids`."""
        for gone in self._by_id.keys() - experiment_ids:
            del self._by_id[gone]


async def read_running_stats(pool: asyncpg.Pool, specs: SpecCache) -> list[RawStats]:
    """Every running experiment's RawStats in one repeatable-read snapshot and four queries
    (the optimizer's read, whatever the number of experiments)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        computed_at = datetime.now(UTC)
        rows = await conn.fetch(Q["optimizer_running_stats"])
        ids = [r["id"] for r in rows]
        arm_rows = await conn.fetch(Q["stats_arms_many"], ids)
        metric_rows = await conn.fetch(Q["stats_metrics_many"], ids)
        seq_rows = await conn.fetch(Q["sequential_states_many"], ids)
    arms_of: dict[int, list[Any]] = defaultdict(list)
    for r in arm_rows:
        arms_of[r["experiment_id"]].append(r)
    metrics_of: dict[int, list[Any]] = defaultdict(list)
    for r in metric_rows:
        metrics_of[r["experiment_id"]].append(r)
    seq_of: dict[int, list[Any]] = defaultdict(list)
    for r in seq_rows:
        seq_of[r["experiment_id"]].append(r)
    specs.keep(set(ids))
    return [
        _raw_stats(
            r,
            specs.get(r["id"], r["settings"]),
            (r["allocation_id"], list(r["weights"])),
            arms_of.get(r["id"], []),
            metrics_of.get(r["id"], []),
            seq_of.get(r["id"], []),
            computed_at,
        )
        for r in rows
    ]


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
