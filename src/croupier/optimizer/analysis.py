"""Results of an experiment: the sufficient statistics read from PostgreSQL, per arm and metric.

The statistical fields (intervals, tests, P(best), SRM, recommendation) are computed by the
statistics core from these numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from croupier.admin.schemas import ArmResult
from croupier.errors import NotFound
from croupier.model import ExperimentSpec, Metric
from croupier.storage.queries import Q

_spec_decoder = msgspec.json.Decoder(ExperimentSpec)


@dataclass(frozen=True, slots=True)
class RawStats:
    """Everything the statistics are computed from, read in one repeatable-read snapshot."""

    experiment_id: int
    spec: ExperimentSpec
    status: str
    weights: list[float]
    exposures: list[int]
    expected_exposures: list[float]
    # metric -> per arm (n, sum, sum_sq)
    metrics: dict[str, list[tuple[int, float, float]]]
    computed_at: datetime


async def read_raw_stats(pool: asyncpg.Pool, key: str) -> RawStats:
    """One consistent read of an experiment's sufficient statistics."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        computed_at = datetime.now(UTC)
        row = await conn.fetchrow(Q["experiment_get"], key)
        if row is None:
            raise NotFound(f"No experiment with key {key!r}; list them with GET /v1/experiments.")
        spec = _spec_decoder.decode(row["settings"])
        alloc = await conn.fetchrow(Q["allocation_current"], row["id"])
        arms = await conn.fetch(Q["stats_arms"], row["id"])
        metric_rows = await conn.fetch(Q["stats_metrics"], row["id"])
    k = len(spec.arms)
    exposures = [0] * k
    expected = [0.0] * k
    for r in arms:
        exposures[r["arm_index"]] = r["exposures"]
        expected[r["arm_index"]] = r["expected_exposures"]
    metrics: dict[str, list[tuple[int, float, float]]] = {
        m.name: [(0, 0.0, 0.0)] * k for m in spec.metrics
    }
    for r in metric_rows:
        if r["metric"] in metrics:
            metrics[r["metric"]][r["arm_index"]] = (r["n"], r["sum"], r["sum_sq"])
    return RawStats(
        experiment_id=row["id"],
        spec=spec,
        status=row["status"],
        weights=list(alloc["weights"]),
        exposures=exposures,
        expected_exposures=expected,
        metrics=metrics,
        computed_at=computed_at,
    )


def arm_data(raw: RawStats, metric: Metric) -> list[ArmResult]:
    """Per-arm count, sum, mean and std of one metric (SPEC §3 definitions)."""
    out: list[ArmResult] = []
    control = raw.spec.control_index
    for i, arm in enumerate(raw.spec.arms):
        n_rewards, total, total_sq = raw.metrics[metric.name][i]
        exposures = raw.exposures[i]
        mean: float | None
        std: float | None
        if metric.type == "binary":
            count = exposures
            mean = total / exposures if exposures > 0 else None
            std = math.sqrt(max(mean * (1.0 - mean), 0.0)) if mean is not None else None
        else:
            count = n_rewards
            mean = total / n_rewards if n_rewards > 0 else None
            if n_rewards > 1 and mean is not None:
                var = max((total_sq - n_rewards * mean * mean) / (n_rewards - 1), 0.0)
                std = math.sqrt(var)
            else:
                std = None
        out.append(
            ArmResult(
                arm=arm.key,
                control=i == control,
                weight=raw.weights[i],
                exposures=exposures,
                expected_exposures=raw.expected_exposures[i],
                count=count,
                sum=total,
                mean=mean,
                std=std,
            )
        )
    return out


def results_body(raw: RawStats) -> dict[str, Any]:
    """The `/results` document (data part)."""
    primary = next(m for m in raw.spec.metrics if m.name == "reward")
    return {
        "experiment": raw.spec.key,
        "status": raw.status,
        "policy": raw.spec.policy,
        "confidence_level": raw.spec.confidence_level,
        "computed_at": raw.computed_at,
        "metric": {"name": primary.name, "type": primary.type, "direction": primary.direction},
        "arms": arm_data(raw, primary),
        "metrics": {
            m.name: {"type": m.type, "direction": m.direction, "arms": arm_data(raw, m)}
            for m in raw.spec.metrics
        },
    }
