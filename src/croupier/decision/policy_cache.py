"""The in-process policy snapshot: an immutable compiled policy per experiment.

The hot path only reads `PolicyCache.policies` (a dict replaced as a whole, never mutated in
place), so a request always sees one consistent snapshot of an experiment. Updates come from
the feed (Redis pub/sub, PostgreSQL polling) through `apply` / `remove` / `replace_all`.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from croupier.decision.assign import cumulative
from croupier.model import MetricType, PolicyData, Rule


@dataclass(frozen=True, slots=True)
class Policy:
    """A compiled, immutable policy: everything `decide` needs, nothing it must compute."""

    experiment_id: int
    key: str
    version: int
    status: str
    kind: str
    sticky: bool
    salt: bytes
    allocation_id: int
    arm_keys: tuple[str, ...]
    weights: tuple[float, ...]
    cum_weights: tuple[float, ...]
    configs: tuple[msgspec.Raw, ...]
    control_index: int
    # the arm served to everyone when not running (winner, else control) and its reason
    serve_index: int
    serve_reason: str
    rules: tuple[Rule, ...]
    traffic_fraction: float
    # rollout: index of the candidate arm (the non-control one)
    candidate_index: int
    metric_types: dict[str, MetricType]

    @classmethod
    def compile(cls, data: PolicyData) -> Policy:
        """Turn published policy data into the hot path's lookup structure."""
        if data.status == "running":
            serve_reason = "allocated"
        elif data.status == "archived":
            serve_reason = data.ended_status or "completed"
        else:
            serve_reason = data.status
        serve_index = data.control_index
        if data.winner_index is not None and serve_reason == "completed":
            serve_index = data.winner_index
        candidate = next((i for i in range(len(data.arm_keys)) if i != data.control_index), 0)
        return cls(
            experiment_id=data.experiment_id,
            key=data.key,
            version=data.version,
            status=data.status,
            kind=data.policy,
            sticky=data.sticky,
            salt=data.salt.encode(),
            allocation_id=data.allocation_id,
            arm_keys=tuple(data.arm_keys),
            weights=tuple(data.weights),
            cum_weights=cumulative(data.weights),
            configs=tuple(data.configs),
            control_index=data.control_index,
            serve_index=serve_index,
            serve_reason=serve_reason,
            rules=tuple(data.targeting),
            traffic_fraction=data.traffic_fraction,
            candidate_index=candidate,
            metric_types=dict(data.metric_types),
        )


class PolicyCache:
    """Holds the snapshot: experiment key → Policy, and experiment id → Policy."""

    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}
        self.by_id: dict[int, Policy] = {}

    def _swap(self, policies: dict[str, Policy]) -> None:
        self.by_id = {p.experiment_id: p for p in policies.values()}
        self.policies = policies

    def apply(self, data: PolicyData) -> bool:
        """Install a newer policy for one experiment; older versions are ignored."""
        current = self.policies.get(data.key)
        if current is not None and current.version >= data.version:
            return False
        stale_id = [k for k, p in self.policies.items() if p.experiment_id == data.experiment_id]
        policies = dict(self.policies)
        for k in stale_id:
            policies.pop(k, None)
        policies[data.key] = Policy.compile(data)
        self._swap(policies)
        return True

    def remove(self, key: str, version: int) -> bool:
        """Forget a deleted experiment (unless a newer one with that key is already known)."""
        current = self.policies.get(key)
        if current is None or current.version > version:
            return False
        policies = dict(self.policies)
        del policies[key]
        self._swap(policies)
        return True

    def replace_all(self, items: list[PolicyData]) -> None:
        """Install a complete snapshot (start-up and full resync)."""
        self._swap({d.key: Policy.compile(d) for d in items})

    def versions(self) -> dict[int, int]:
        """experiment id → version known here."""
        return {p.experiment_id: p.version for p in self.policies.values()}
