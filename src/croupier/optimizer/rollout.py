"""The `rollout` policy's state changes, as pure functions: which stage may follow, and its weights.

A rollout has two arms, the control and one candidate. The candidate's share follows the
experiment's `stages` (strictly increasing, the last 1.0). Assignment is by a hash u ∈ [0, 1)
of (salt, unit): a unit gets the candidate when u < share. Because shares only grow, a unit
that has the candidate keeps it at every later stage; units move only control → candidate.
The one way back is a rollback, which serves the control to everyone.

*When* to advance (the stage's `min_duration_s` and `min_exposures`, no degradation) is decided
by :func:`croupier.optimizer.recommend.recommend`, the same rule the results endpoint shows;
this module only checks that a proposed stage change keeps the rollout monotone and turns it
into weights. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from croupier.model import Stage


@dataclass(frozen=True, slots=True)
class StageChange:
    """A validated stage change: the new stage, its share and the two arms' weights."""

    stage_index: int
    share: float
    weights: list[float]


def stage_weights(share: float, *, control_index: int) -> list[float]:
    """The two arms' weights when the candidate has `share` of the traffic."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a rollout share must be between 0 and 1, got {share!r}")
    weights = [0.0, 0.0]
    weights[control_index] = 1.0 - share
    weights[1 - control_index] = share
    return weights


def stage_change(
    stages: Sequence[Stage], current: int | None, proposed: int | None, *, control_index: int
) -> StageChange | None:
    """The change to stage `proposed`, or None unless it is the stage right after `current`.

    Only a step forward by exactly one stage is taken: a stale or repeated proposal (an
    evaluation computed before the previous advance was applied) can never move a rollout
    backwards or skip a stage.
    """
    if proposed is None or not stages:
        return None
    at = 0 if current is None else current
    if proposed != at + 1 or proposed >= len(stages):
        return None
    share = stages[proposed].share
    if share < stages[at].share:
        return None
    return StageChange(proposed, share, stage_weights(share, control_index=control_index))


def is_monotone(shares: Sequence[float]) -> bool:
    """True when a sequence of published candidate shares never decreases."""
    return all(b >= a for a, b in itertools.pairwise(shares))
