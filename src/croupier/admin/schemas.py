"""Create / Update / Read bodies of the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from croupier.model import Arm, Direction, Metric, MetricType, PolicyKind, Rule, Stage, Status


class ExperimentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /v1/experiments`. Unset options take the documented defaults."""

    key: str
    policy: PolicyKind
    arms: list[Arm]
    name: str | None = None
    description: str | None = None
    sticky: bool | None = None
    metrics: list[Metric] | None = None
    targeting: list[Rule] | None = None
    traffic_fraction: float = 1.0
    confidence_level: float = 0.95
    auto_stop: bool = True
    auto_promote: bool = True
    min_exposures_per_arm: int = 100
    min_arm_weight: float = 0.01
    p_best_threshold: float = 0.95
    loss_threshold: float | None = None
    max_exposures: int | None = None
    max_duration_s: float | None = None
    stages: list[Stage] | None = None
    alerts_url: str | None = None


class ExperimentPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `PATCH /v1/experiments/{key}`: only the fields sent change. Arms, metrics,
    policy, sticky and stages can change only in `draft`."""

    name: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    policy: PolicyKind | UnsetType = UNSET
    sticky: bool | UnsetType = UNSET
    arms: list[Arm] | UnsetType = UNSET
    metrics: list[Metric] | UnsetType = UNSET
    targeting: list[Rule] | UnsetType = UNSET
    traffic_fraction: float | UnsetType = UNSET
    confidence_level: float | UnsetType = UNSET
    auto_stop: bool | UnsetType = UNSET
    auto_promote: bool | UnsetType = UNSET
    min_exposures_per_arm: int | UnsetType = UNSET
    min_arm_weight: float | UnsetType = UNSET
    p_best_threshold: float | UnsetType = UNSET
    loss_threshold: float | UnsetType | None = UNSET
    max_exposures: int | UnsetType | None = UNSET
    max_duration_s: float | UnsetType | None = UNSET
    stages: list[Stage] | UnsetType | None = UNSET
    alerts_url: str | UnsetType | None = UNSET


class StopRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of `POST /v1/experiments/{key}/stop` (optional): the arm to serve to everyone."""

    winner: str | None = None


class ExperimentOut(msgspec.Struct, kw_only=True):
    """An experiment as the API returns it: its definition, status and current weights."""

    key: str
    name: str | None
    description: str | None
    policy: PolicyKind
    sticky: bool
    status: Status
    arms: list[Arm]
    weights: dict[str, float]
    metrics: list[Metric]
    targeting: list[Rule]
    traffic_fraction: float
    confidence_level: float
    auto_stop: bool
    auto_promote: bool
    min_exposures_per_arm: int
    min_arm_weight: float
    p_best_threshold: float
    loss_threshold: float | None
    max_exposures: int | None
    max_duration_s: float | None
    stages: list[Stage] | None
    stage: int | None
    alerts_url: str | None
    winner: str | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class AllocationOut(msgspec.Struct):
    """One allocation change."""

    at: datetime
    weights: dict[str, float]
    reason: str


class AuditOut(msgspec.Struct):
    """One audit entry: who changed what, when."""

    id: int
    at: datetime
    actor: str
    experiment: str | None
    action: str
    details: dict[str, Any]


class ArmResult(msgspec.Struct, kw_only=True):
    """Per-arm data of one metric (statistics fields are null where undefined)."""

    arm: str
    control: bool
    weight: float
    exposures: int
    expected_exposures: float
    count: int
    sum: float
    mean: float | None
    std: float | None
    ci: list[float] | None = None
    p_best: float | None = None
    expected_loss: float | None = None


class MetricInfo(msgspec.Struct, kw_only=True):
    """The metric the results are about."""

    name: str
    type: MetricType
    direction: Direction


class ComparisonResult(msgspec.Struct, kw_only=True):
    """One arm against the control on the primary metric (null where undefined)."""

    arm: str
    vs: str
    diff: float | None
    diff_ci: list[float] | None
    lift: float | None
    p_value: float | None
    p_value_adjusted: float | None
    sequential_p_value: float
    significant: bool


class GuardrailResult(msgspec.Struct, kw_only=True):
    """One arm against the control on one guardrail metric (one-sided, beyond tolerance)."""

    metric: str
    arm: str
    vs: str
    diff: float | None
    p_value: float | None
    sequential_p_value: float
    breached: bool


class SrmOut(msgspec.Struct, kw_only=True):
    """Sample-ratio-mismatch check: chi-square of exposures against expected exposures."""

    p_value: float | None
    flag: bool


class RecommendationOut(msgspec.Struct, kw_only=True):
    """What the optimizer would do now, and why."""

    action: Literal["continue", "stop", "rollback"]
    arm: str | None
    reason: str


class MetricArms(msgspec.Struct, kw_only=True):
    """Per-arm data of one metric (the `metrics` map of the results)."""

    type: MetricType
    direction: Direction
    arms: list[ArmResult]


class ResultsOut(msgspec.Struct, kw_only=True):
    """`GET /v1/experiments/{key}/results` (SPEC §3); `seed` reproduces p_best/expected_loss."""

    experiment: str
    status: Status
    policy: PolicyKind
    confidence_level: float
    computed_at: datetime
    metric: MetricInfo
    arms: list[ArmResult]
    comparisons: list[ComparisonResult]
    guardrails: list[GuardrailResult]
    srm: SrmOut
    recommendation: RecommendationOut
    seed: int
    metrics: dict[str, MetricArms]
