"""The cycle's fingerprint of an experiment's statistics inputs: equal exactly when they are."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from croupier.model import Arm, ExperimentSpec, Metric
from croupier.optimizer.analysis import KIND_GUARDRAIL, KIND_TWO_SIDED, RawStats
from croupier.optimizer.tick import fingerprint

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _raw(**changes: Any) -> RawStats:
    spec = ExperimentSpec(
        key="e",
        policy="thompson",
        sticky=False,
        arms=[Arm(key="a0", control=True), Arm(key="a1"), Arm(key="a2")],
        metrics=[
            Metric(name="reward"),
            Metric(name="latency_ms", type="continuous", max_relative_degradation=0.2),
        ],
    )
    raw = RawStats(
        experiment_id=1,
        spec=spec,
        status="running",
        weights=[0.2, 0.3, 0.5],
        exposures=[100, 200, 300],
        expected_exposures=[100.0, 200.0, 300.0],
        metrics={
            "reward": [(100, 5.0, 5.0), (200, 12.0, 12.0), (300, 20.0, 20.0)],
            "latency_ms": [(50, 15000.0, 4.6e6), (90, 27000.0, 8.2e6), (150, 45000.0, 1.4e7)],
        },
        sequential={("reward", KIND_TWO_SIDED): [None, 0.5, 0.25]},
        stage_index=None,
        stage_started_at=None,
        started_at=NOW,
        stage_exposures=0,
        disabled_arms=frozenset(),
        computed_at=NOW,
        allocation_id=7,
    )
    return dataclasses.replace(raw, **changes)


def test_equal_inputs_give_equal_fingerprints() -> None:
    """Two snapshots with equal inputs (other objects, other allocation, clock and weights,
    which the statistics do not read) have the same fingerprint."""
    a = _raw()
    b = _raw(
        weights=[0.1, 0.1, 0.8],
        allocation_id=8,
        computed_at=datetime(2027, 1, 1, tzinfo=UTC),
        metrics={name: [tuple(t) for t in per_arm] for name, per_arm in a.metrics.items()},
    )
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize(
    "changes",
    [
        {"exposures": [100, 200, 301]},
        {"expected_exposures": [100.0, 200.5, 300.0]},
        {
            "metrics": {
                **_raw().metrics,
                "reward": [(100, 5.0, 5.0), (200, 13.0, 13.0), (300, 20.0, 20.0)],
            }
        },
        {
            "metrics": {
                **_raw().metrics,
                "latency_ms": [(50, 15000.0, 4.6e6), (90, 27000.0, 8.2e6), (151, 45000.0, 1.4e7)],
            }
        },
        {"sequential": {("reward", KIND_TWO_SIDED): [None, 0.5, 0.2]}},
        {
            "sequential": {
                ("reward", KIND_TWO_SIDED): [None, 0.5, 0.25],
                ("latency_ms", KIND_GUARDRAIL): [None, 1.0, 1.0],
            }
        },
        {"sequential": {}},
        {"spec": msgspec.structs.replace(_raw().spec, min_arm_weight=0.02)},
    ],
)
def test_any_changed_input_changes_the_fingerprint(changes: dict[str, Any]) -> None:
    """Any change of exposures, expected exposures, a metric total, a stored sequential p-value
    (or which ones are stored) or the definition gives another fingerprint."""
    assert fingerprint(_raw(**changes)) != fingerprint(_raw())


def test_the_merged_sequential_state_replaces_the_snapshot_one() -> None:
    """The fingerprint stored after a cycle uses the sequential state the cycle wrote, so the
    next snapshot, reading that state, matches it."""
    written = {("reward", KIND_TWO_SIDED): [None, 0.4, 0.25]}
    assert fingerprint(_raw(), written) == fingerprint(_raw(sequential=written))
    assert fingerprint(_raw(), written) != fingerprint(_raw())
