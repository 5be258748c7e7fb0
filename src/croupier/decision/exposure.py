"""Hands decision events to the write-behind log without awaiting anything.

The hot path appends one tuple to a list; the writer (storage/decision_writer.py) swaps the
list out and writes it in batches. When the buffer is full (PostgreSQL unreachable for long),
new events are dropped and counted instead of growing memory without bound.
"""

from __future__ import annotations

import time

# (decision_id, experiment_id, arm_index, allocation_id, unit_id, counted, reason,
#  decided_at_epoch_s, sticky_experiment) — the writer's COPY columns, in order
DecisionEvent = tuple[str, int, int, int, str, bool, str, float, bool]


class DecisionLog:
    """A bounded in-memory buffer of decision events."""

    __slots__ = ("dropped", "events", "max_events", "recorded")

    def __init__(self, *, max_events: int) -> None:
        self.events: list[DecisionEvent] = []
        self.max_events = max_events
        self.dropped = 0
        self.recorded = 0

    def record(
        self,
        decision_id: str,
        experiment_id: int,
        arm_index: int,
        allocation_id: int,
        unit_id: str,
        counted: bool,
        reason: str,
        sticky: bool,
    ) -> None:
        """Queue one decision; never blocks."""
        if len(self.events) >= self.max_events:
            self.dropped += 1
            return
        self.recorded += 1
        self.events.append(
            (
                decision_id,
                experiment_id,
                arm_index,
                allocation_id,
                unit_id,
                counted,
                reason,
                time.time(),
                sticky,
            )
        )

    def take(self, limit: int) -> list[DecisionEvent]:
        """Remove and return up to `limit` of the oldest events."""
        if len(self.events) <= limit:
            out, self.events = self.events, []
            return out
        out = self.events[:limit]
        del self.events[:limit]
        return out

    def put_back(self, events: list[DecisionEvent]) -> None:
        """Return events whose write failed to the front, dropping what exceeds the bound."""
        room = self.max_events - len(self.events)
        if room <= 0:
            self.dropped += len(events)
            return
        kept = events[:room]
        self.dropped += len(events) - len(kept)
        self.events[:0] = kept

    def __len__(self) -> int:
        return len(self.events)
