# Docstrings and reasons use mathematical notation (α, ≥) on purpose.
"""What to do with an experiment now (SPEC §4), as a pure function of its statistics.

:func:`recommend` looks at one evaluation (the primary metric's report and the guardrail
checks) and the experiment's definition and lifecycle state, and returns a
:class:`Recommendation`: ``continue`` (possibly advancing a rollout stage), ``stop`` with a
winner, or ``rollback`` naming the arms to roll back. It does no I/O and reads no clock; the
optimizer acts on it, the results endpoint shows it.

Rules, first match wins (only a ``running`` experiment gets anything but ``continue``):

1. A guardrail breach (the one-sided sequential test of "worse than the control by more than
   the tolerance" is significant; the statistics core only starts looking once both arms have
   30 observations) → ``rollback``. In ``rollout`` the whole experiment rolls back to the
   control; in other policies the breached arms (not already disabled) get weight 0, listed in
   ``rollback_arms``. When every non-control arm is disabled, ``stop`` with the control.
2. (No rule: the primary metric never rolls back. SPEC §4 rolls back on guardrails only; a
   significantly worse primary metric holds a ``rollout`` at its stage, rule 6.)
3. Sample ratio mismatch flagged → ``continue`` (no decision on untrustworthy data).
4. Policy rule, once every active arm has ``min_exposures_per_arm`` exposures:
   ``thompson`` stops when the top arm's P(best) ≥ ``p_best_threshold`` and its expected loss
   ≤ ``loss_threshold`` (when unset: 1 % of that arm's |mean|, in the metric's units);
   ``fixed`` stops when any comparison is significant (sequential p < α): the winner is the
   best significantly-better arm by mean (in the metric's direction), or the control when every
   significant arm is worse. Arms with a breached guardrail never win.
5. Any policy at ``max_exposures`` (total exposures) or ``max_duration_s`` (since the first
   start) → ``stop``; the winner is the active arm with the highest P(best), or the control
   when P(best) is undefined.
6. ``rollout``: when the current stage has lasted ``min_duration_s`` and seen
   ``min_exposures`` exposures *of both arms together since the stage began* (the same count
   the optimizer keeps, `experiments.stage_exposures_base`) → ``continue`` with
   ``next_stage`` (0-based, like the experiment's ``stage``); at the last stage (share 1.0)
   → ``stop`` with the candidate as winner. Unless the candidate is significantly worse on the
   primary metric at this look (fixed-horizon p < α, diff in the metric's wrong direction):
   then ``continue`` holding the stage, and it advances at the first look where that no
   longer holds.

A ``stop`` is advice: the optimizer applies it only when the experiment's ``auto_stop`` is on
(guardrail rollbacks always apply). Reasons are sentences a person can read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from croupier.model import DEFAULT_STAGES, PRIMARY_METRIC, ExperimentSpec, Stage
from croupier.stats.report import GuardrailCheck, MetricReport

Action = Literal["continue", "stop", "rollback"]

DEFAULT_RELATIVE_LOSS = 0.01
"""With no ``loss_threshold``, a thompson winner's expected loss must be ≤ 1 % of its |mean|."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What the optimizer should do now, and why.

    Attributes:
        action: continue, stop (with a winner) or rollback.
        arm: the winner (stop), the first arm to roll back (rollback), else None.
        reason: one sentence saying why.
        next_stage: rollout only: the 0-based stage to advance to now (action continue).
        rollback_arms: every arm to roll back (for ``rollout``, the candidate; the whole
            experiment rolls back to the control).
    """

    action: Action
    arm: str | None
    reason: str
    next_stage: int | None = None
    rollback_arms: tuple[str, ...] = ()


def uses_p_best(spec: ExperimentSpec) -> bool:
    """Whether :func:`recommend` (and the optimizer's plan) can read P(best) and expected loss
    for this experiment: the ``thompson`` rules, and the rule-5 limits of any policy (the
    winner at ``max_exposures`` / ``max_duration_s``). Elsewhere they only inform people."""
    return (
        spec.policy == "thompson"
        or spec.max_exposures is not None
        or spec.max_duration_s is not None
    )


def _p(x: float) -> str:
    return f"{x:.3g}"


def _pct(share: float) -> str:
    return f"{share * 100:g}%"


def _better(diff: float, direction: str) -> bool:
    return diff > 0.0 if direction == "maximize" else diff < 0.0


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _current_best(
    spec: ExperimentSpec, primary: MetricReport, excluded: Collection[int]
) -> tuple[int, str]:
    """The eligible arm with the highest P(best), or the control when undefined."""
    control = spec.control_index
    candidates = [
        a for a in primary.arms if a.arm not in excluded and a.p_best is not None
    ]
    if not candidates:
        return control, "P(best) is undefined, so the control is kept"
    best = max(candidates, key=lambda a: a.p_best or 0.0)
    return best.arm, f"{spec.arms[best.arm].key} has the highest P(best) ({best.p_best:.1%})"


def recommend(
    *,
    spec: ExperimentSpec,
    status: str,
    primary: MetricReport,
    guardrails: Mapping[str, Sequence[GuardrailCheck]],
    exposures: Sequence[int],
    stage_index: int | None,
    stage_started_at: datetime | None,
    started_at: datetime | None,
    now: datetime,
    stage_exposures: int | None = None,
    disabled_arms: Collection[int] = (),
) -> Recommendation:
    """The recommended action for one experiment (see the module docstring for the rules).

    ``stage_exposures`` counts both arms' exposures since the current rollout stage began
    (None: all exposures so far); ``disabled_arms`` are arms already rolled back on a
    guardrail (they are not rolled back again, not waited for and never win).
    """
    keys = [a.key for a in spec.arms]
    control = spec.control_index
    alpha = primary.alpha
    if status != "running":
        what = {
            "draft": "has not been started yet (draft)",
            "paused": "is paused",
            "completed": "has ended (completed)",
            "rolled_back": "has ended (rolled back)",
            "archived": "is archived",
        }.get(status, f"is {status}")
        return Recommendation("continue", None, f"Nothing to do: the experiment {what}.")

    disabled = frozenset(disabled_arms)
    # 1. guardrails
    breaches: dict[int, list[GuardrailCheck]] = {}
    names: dict[int, list[str]] = {}
    for metric, checks in guardrails.items():
        for check in checks:
            if check.breached:
                breaches.setdefault(check.arm, []).append(check)
                names.setdefault(check.arm, []).append(metric)
    breached = frozenset(breaches)

    def _breach_text(i: int) -> str:
        parts = [
            f"{m} (sequential p = {_p(c.sequential_p_value)} < α = {_p(alpha)})"
            for m, c in zip(names[i], breaches[i], strict=True)
        ]
        return f"{keys[i]} is worse than the control {keys[control]} beyond the tolerance on " + (
            ", ".join(parts)
        )

    if spec.policy == "rollout":
        candidate = 1 - control
        if candidate in breached:
            return Recommendation(
                "rollback", keys[candidate],
                f"Roll back to the control: guardrail breached, {_breach_text(candidate)}.",
                rollback_arms=(keys[candidate],),
            )
    else:
        new = [i for i in sorted(breached) if i not in disabled and i != control]
        if new:
            return Recommendation(
                "rollback", keys[new[0]],
                "Set the weight of " + ", ".join(keys[i] for i in new) + " to 0: guardrail "
                "breached, " + "; ".join(_breach_text(i) for i in new) + ".",
                rollback_arms=tuple(keys[i] for i in new),
            )
    excluded = disabled | breached
    others = [i for i in range(len(keys)) if i != control]
    if others and all(i in excluded for i in others):
        return Recommendation(
            "stop", keys[control],
            f"Stop and keep the control {keys[control]}: every other arm was rolled back on a "
            "guardrail.",
        )

    reward = spec.metric(PRIMARY_METRIC)
    direction = reward.direction if reward is not None else "maximize"

    # 3. SRM
    srm = primary.srm
    if srm.flag:
        return Recommendation(
            "continue", None,
            f"Hold: sample ratio mismatch (p = {_p(srm.p_value or 0.0)} < 0.001), so the "
            "statistics cannot be trusted; check assignment and exposure logging.",
        )

    # 4. policy rules
    active = [i for i in range(len(keys)) if i not in disabled]
    short = [i for i in active if exposures[i] < spec.min_exposures_per_arm]
    waiting: str | None = None
    if spec.policy != "rollout" and short:
        i = min(short, key=lambda j: exposures[j])
        waiting = (
            f"collecting data: {keys[i]} has {exposures[i]} of the "
            f"{spec.min_exposures_per_arm} exposures required per arm"
        )
    elif spec.policy == "thompson":
        ranked = [a for a in primary.arms if a.p_best is not None]
        if not ranked:
            waiting = "P(best) is not defined yet (a continuous arm has fewer than 2 rewards)"
        else:
            top = max(ranked, key=lambda a: a.p_best or 0.0)
            p_best = top.p_best or 0.0
            loss = top.expected_loss
            threshold = (
                spec.loss_threshold
                if spec.loss_threshold is not None
                else DEFAULT_RELATIVE_LOSS * abs(top.mean or 0.0)
            )
            if top.arm in excluded:
                waiting = f"the likeliest best arm {keys[top.arm]} breached a guardrail"
            elif p_best < spec.p_best_threshold:
                waiting = (
                    f"no arm is best with probability ≥ {spec.p_best_threshold:.0%} yet "
                    f"(leader: {keys[top.arm]} at {p_best:.1%})"
                )
            elif loss is None or loss > threshold:
                waiting = (
                    f"{keys[top.arm]} is best with probability {p_best:.1%} but its expected "
                    f"loss {'undefined' if loss is None else f'{loss:.4g}'} exceeds "
                    f"{threshold:.4g}"
                )
            else:
                return Recommendation(
                    "stop", keys[top.arm],
                    f"Stop: {keys[top.arm]} is the best arm with probability {p_best:.1%} "
                    f"≥ {spec.p_best_threshold:.0%} and its expected loss {loss:.4g} ≤ "
                    f"{threshold:.4g}.",
                )
    elif spec.policy == "fixed":
        significant = [c for c in primary.comparisons if c.significant and c.diff is not None]
        if not significant:
            smallest = min((c.sequential_p_value for c in primary.comparisons), default=1.0)
            waiting = (
                f"no comparison is significant yet (smallest sequential p = {_p(smallest)} "
                f"≥ α = {_p(alpha)})"
            )
        else:
            better = [
                c for c in significant
                if _better(c.diff or 0.0, direction) and c.arm not in excluded
            ]
            if better:
                sign = 1.0 if direction == "maximize" else -1.0
                win = max(better, key=lambda c: sign * (c.diff or 0.0))
                return Recommendation(
                    "stop", keys[win.arm],
                    f"Stop: {keys[win.arm]} is significantly better than the control "
                    f"{keys[control]} (diff {win.diff:.4g}, sequential p = "
                    f"{_p(win.sequential_p_value)} < α = {_p(alpha)}).",
                )
            worse = ", ".join(keys[c.arm] for c in significant)
            return Recommendation(
                "stop", keys[control],
                f"Stop and keep the control {keys[control]}: {worse} "
                f"{'is' if len(significant) == 1 else 'are'} significantly worse "
                f"(sequential p < α = {_p(alpha)}) and no arm is significantly better.",
            )

    # 5. limits, any policy
    total = sum(exposures)
    if spec.max_exposures is not None and total >= spec.max_exposures:
        arm, why = _current_best(spec, primary, excluded)
        return Recommendation(
            "stop", keys[arm],
            f"Stop: the experiment reached max_exposures ({total} ≥ {spec.max_exposures}); "
            f"{why}.",
        )
    if spec.max_duration_s is not None and started_at is not None:
        elapsed_s = (now - started_at).total_seconds()
        if elapsed_s >= spec.max_duration_s:
            arm, why = _current_best(spec, primary, excluded)
            return Recommendation(
                "stop", keys[arm],
                f"Stop: the experiment reached max_duration_s ({_duration(elapsed_s)} ≥ "
                f"{_duration(spec.max_duration_s)}); {why}.",
            )

    # 6. rollout stages
    if spec.policy == "rollout":
        stages = spec.stages or [Stage(share=s) for s in DEFAULT_STAGES]
        index = min(max(stage_index or 0, 0), len(stages) - 1)
        stage = stages[index]
        label = f"stage {index + 1} ({_pct(stage.share)})"
        elapsed_s = (now - stage_started_at).total_seconds() if stage_started_at else 0.0
        seen = stage_exposures if stage_exposures is not None else total
        missing: list[str] = []
        if elapsed_s < stage.min_duration_s:
            missing.append(f"{_duration(stage.min_duration_s - elapsed_s)} more")
        if seen < stage.min_exposures:
            missing.append(f"{stage.min_exposures - seen} more exposures")
        if missing:
            return Recommendation(
                "continue", None,
                f"Continue {label}: waiting for {' and '.join(missing)}.",
            )
        candidate = 1 - control
        # The hold reads this look's fixed-horizon p-value, not the sequential running
        # minimum: a hold is not final, and a minimum that dipped once (the candidate's newest
        # exposures still waiting for their rewards) would hold the stage for good.
        for c in primary.comparisons:
            if (
                c.arm == candidate
                and c.p_value is not None
                and c.p_value < alpha
                and c.diff is not None
                and _better(-c.diff, direction)
            ):
                return Recommendation(
                    "continue", None,
                    f"Hold {label}: the candidate {keys[candidate]} is significantly worse than "
                    f"{keys[control]} on the primary metric now (diff {c.diff:.4g}, p = "
                    f"{_p(c.p_value)} < α = {_p(alpha)}); the rollout advances once it is not.",
                )
        if index == len(stages) - 1:
            return Recommendation(
                "stop", keys[candidate],
                f"Stop: the last {label} held for {_duration(elapsed_s)} and {seen} exposures "
                f"with no significant degradation; {keys[candidate]} is rolled out to everyone.",
            )
        nxt = stages[index + 1]
        return Recommendation(
            "continue", None,
            f"Advance to stage {index + 2} ({_pct(nxt.share)}): {label} held for "
            f"{_duration(elapsed_s)} and {seen} exposures with no significant degradation.",
            next_stage=index + 1,
        )

    return Recommendation("continue", None, f"Continue: {waiting}.")
