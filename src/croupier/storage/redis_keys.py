"""Every Redis key and channel Croupier uses is built here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key builder bound to one installation's prefix (one prefix per test run, too)."""

    prefix: str

    @property
    def policy_channel(self) -> str:
        """Pub/sub channel carrying policy snapshots and removals."""
        return f"{self.prefix}:policy"

    @property
    def keys_channel(self) -> str:
        """Pub/sub channel announcing API key changes (revocations)."""
        return f"{self.prefix}:keys"

    def policy(self, experiment_key: str) -> str:
        """The latest encoded policy snapshot of one experiment."""
        return f"{self.prefix}:policy:{experiment_key}"

    def sticky(self, experiment_id: int) -> str:
        """Hash unit_id -> "arm_index:propensity" for a sticky adaptive experiment."""
        return f"{self.prefix}:sticky:{experiment_id}"
