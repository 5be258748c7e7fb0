"""The `rollout` policy as a pure state machine: which stage comes next, and its weights.

A rollout has two arms, the control and one candidate. The candidate's share follows the
experiment's `stages` (strictly increasing, the last 1.0). Assignment is by a hash u ∈ [0, 1)
of (salt, unit): a unit gets the candidate when u < share. Because shares only grow, a unit
that has the candidate keeps it at every later stage; units move only control → candidate.
The one way back is a rollback, which serves the control to everyone.

Nothing here does I/O or reads a clock: the caller passes `now` and the counts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from croupier.model import Stage

StepKind = Literal["hold", "advance", "complete", "rollback"]


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a running rollout stands.

    Attributes:
        stage_index: index into `stages` of the stage in force.
        stage_started_at: when that stage began.
        stage_exposures: exposures (both arms) counted since that stage began.
    """

    stage_index: int
    stage_started_at: datetime
    stage_exposures: int


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """What the optimizer does with a rollout this cycle.

    Attributes:
        kind: hold (stay), advance (next stage), complete (the last stage has held: the
            candidate wins), rollback (serve the control to everyone).
        stage_index: the stage in force after the step.
        share: the candidate's share after the step (0 after a rollback).
        reason: one sentence saying why.
    """

    kind: StepKind
    stage_index: int
    share: float
    reason: str


def stage_weights(share: float, *, control_index: int) -> list[float]:
    """The two arms' weights when the candidate has `share` of the traffic."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a rollout share must be between 0 and 1, got {share!r}")
    weights = [0.0, 0.0]
    weights[control_index] = 1.0 - share
    weights[1 - control_index] = share
    return weights


def stage_met(stage: Stage, state: RolloutState, *, now: datetime) -> tuple[bool, str]:
    """Whether the stage has lasted `min_duration_s` and seen `min_exposures`, and why not."""
    elapsed_s = (now - state.stage_started_at).total_seconds()
    if elapsed_s < stage.min_duration_s:
        return False, (
            f"stage {state.stage_index + 1} has run {elapsed_s:.0f} s of its "
            f"{stage.min_duration_s:g} s"
        )
    if state.stage_exposures < stage.min_exposures:
        return False, (
            f"stage {state.stage_index + 1} has {state.stage_exposures} of its "
            f"{stage.min_exposures} exposures"
        )
    return True, f"stage {state.stage_index + 1} met its duration and exposures"


def next_step(
    stages: list[Stage],
    state: RolloutState,
    *,
    now: datetime,
    guardrail_breached: str | None,
    primary_degraded: bool,
) -> RolloutStep:
    """The rollout's next step.

    `guardrail_breached` names a breached guardrail (rollback, at any time); a significant
    degradation of the primary metric holds the rollout at its stage (it never advances on
    evidence of harm). Otherwise, once the stage's duration and exposures are met, the rollout
    advances; at the last stage (share 1.0) it completes with the candidate as winner.
    """
    if not stages:
        raise ValueError("a rollout needs at least one stage")
    index = min(max(state.stage_index, 0), len(stages) - 1)
    share = stages[index].share
    if guardrail_breached is not None:
        return RolloutStep(
            "rollback",
            index,
            0.0,
            f"guardrail {guardrail_breached} breached at stage {index + 1} "
            f"(share {share:g}): serving the control",
        )
    if primary_degraded:
        return RolloutStep(
            "hold",
            index,
            share,
            f"holding stage {index + 1}: the primary metric is significantly worse",
        )
    met, why = stage_met(stages[index], state, now=now)
    if not met:
        return RolloutStep("hold", index, share, why)
    if index == len(stages) - 1:
        return RolloutStep(
            "complete",
            index,
            share,
            f"the last stage (share {share:g}) held: the candidate is rolled out",
        )
    nxt = stages[index + 1].share
    return RolloutStep(
        "advance", index + 1, nxt, f"{why}: advancing to stage {index + 2} (share {nxt:g})"
    )


def is_monotone(shares: list[float]) -> bool:
    """True when a sequence of published candidate shares never decreases."""
    return all(b >= a for a, b in itertools.pairwise(shares))
