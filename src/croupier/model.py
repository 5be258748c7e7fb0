"""Value types shared by the admin API, the hot path, storage and the optimizer.

`ExperimentSpec` is an experiment's definition as stored (validated, normalised).
`PolicyData` is what a server process needs to serve decisions for one experiment; it travels
over Redis pub/sub and is compiled by each process into its immutable in-process policy.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PolicyKind = Literal["thompson", "fixed", "rollout"]
MetricType = Literal["binary", "continuous"]
Direction = Literal["maximize", "minimize"]
Status = Literal["draft", "running", "paused", "completed", "rolled_back", "archived"]
RuleOp = Literal["in", "not_in", "eq", "neq", "gt", "gte", "lt", "lte"]

PRIMARY_METRIC = "reward"
DEFAULT_STAGES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.50, 1.00)


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One arm: its key, its configuration object, whether it is the control, its initial weight."""

    key: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    control: bool = False
    weight: float | None = None


class Metric(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A metric: `reward` (primary) or a guardrail with a tolerance."""

    name: str
    type: MetricType = "binary"
    direction: Direction = "maximize"
    max_degradation: float | None = None
    max_relative_degradation: float | None = None


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A targeting rule on the decision context: `attribute op value|values`."""

    attribute: str
    op: RuleOp
    value: Any = None
    values: list[Any] | None = None


class Stage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A rollout stage: the candidate's share and what must hold before moving on."""

    share: float
    min_duration_s: float = 60.0
    min_exposures: int = 100


class ExperimentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An experiment's validated definition, stored as JSON in `experiments.settings`."""

    key: str
    name: str | None = None
    description: str | None = None
    policy: PolicyKind
    sticky: bool
    arms: list[Arm]
    metrics: list[Metric]
    targeting: list[Rule] = msgspec.field(default_factory=list)
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

    @property
    def control_index(self) -> int:
        """Index of the control arm."""
        return next(i for i, a in enumerate(self.arms) if a.control)

    def metric(self, name: str) -> Metric | None:
        """The metric called `name`, if defined."""
        return next((m for m in self.metrics if m.name == name), None)


class PolicyData(msgspec.Struct, frozen=True, kw_only=True, tag="policy"):
    """Everything a server process needs to decide for one experiment (sent over Redis)."""

    experiment_id: int
    key: str
    version: int
    status: Status
    ended_status: str | None
    policy: PolicyKind
    sticky: bool
    salt: str
    allocation_id: int
    weights: list[float]
    arm_keys: list[str]
    configs: list[msgspec.Raw]
    control_index: int
    winner_index: int | None
    targeting: list[Rule]
    traffic_fraction: float
    metric_types: dict[str, MetricType]


class PolicyRemoved(msgspec.Struct, frozen=True, tag="removed"):
    """Published when an experiment is deleted."""

    key: str
    version: int
