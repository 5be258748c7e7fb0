"""Semantic validation of experiment definitions: every problem reported at once, by field."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from croupier.errors import Invalid, field_error
from croupier.model import DEFAULT_STAGES, PRIMARY_METRIC, ExperimentSpec, Metric, Stage

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MIN_ARMS, MAX_ARMS = 2, 32
MAX_CONFIG_BYTES = 16 * 1024
MAX_METRICS = 16
MAX_RULES = 32
MAX_RULE_VALUES = 1000
WEIGHT_TOLERANCE = 1e-6

_encoder = msgspec.json.Encoder()


def default_sticky(policy: str) -> bool:
    """Sticky by default for hash-assigned policies, not for thompson."""
    return policy != "thompson"


def _finite(errors: list[dict[str, Any]], field: str, value: float | None) -> bool:
    if value is not None and not math.isfinite(value):
        errors.append(field_error(field, "must be a finite number"))
        return False
    return value is not None


def validate_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """Check a whole definition; returns it normalised (weights filled) or raises Invalid."""
    e: list[dict[str, Any]] = []
    if not KEY_PATTERN.match(spec.key):
        e.append(field_error("key", f"{spec.key!r} must match {KEY_PATTERN.pattern}"))
    if spec.name is not None and len(spec.name) > 200:
        e.append(field_error("name", "must be at most 200 characters"))
    if spec.description is not None and len(spec.description) > 4000:
        e.append(field_error("description", "must be at most 4000 characters"))

    arms = spec.arms
    if not MIN_ARMS <= len(arms) <= MAX_ARMS:
        e.append(field_error("arms", f"needs {MIN_ARMS} to {MAX_ARMS} arms, got {len(arms)}"))
    if spec.policy == "rollout" and len(arms) != 2:
        e.append(field_error("arms", "a rollout has exactly 2 arms: the control and a candidate"))
    seen: set[str] = set()
    for i, arm in enumerate(arms):
        if not KEY_PATTERN.match(arm.key):
            e.append(field_error(f"arms[{i}].key", f"{arm.key!r} must match {KEY_PATTERN.pattern}"))
        if arm.key in seen:
            e.append(field_error(f"arms[{i}].key", f"duplicate arm key {arm.key!r}"))
        seen.add(arm.key)
        size = len(_encoder.encode(arm.config))
        if size > MAX_CONFIG_BYTES:
            e.append(
                field_error(f"arms[{i}].config", f"is {size} bytes; at most {MAX_CONFIG_BYTES}")
            )
    controls = [i for i, a in enumerate(arms) if a.control]
    if len(controls) != 1:
        e.append(
            field_error("arms", f"exactly one arm must have control: true (found {len(controls)})")
        )

    given = [a.weight for a in arms]
    weights: list[float] | None = None
    if spec.policy == "rollout":
        if any(w is not None for w in given):
            e.append(field_error("arms", "rollout weights follow `stages`; do not set weights"))
    elif all(w is None for w in given):
        weights = [1.0 / len(arms)] * len(arms) if arms else []
    elif any(w is None for w in given):
        e.append(field_error("arms", "give a weight for every arm or for none"))
    else:
        ws = [float(w) for w in given if w is not None]
        bad = [i for i, w in enumerate(ws) if not math.isfinite(w) or not 0.0 <= w <= 1.0]
        for i in bad:
            e.append(field_error(f"arms[{i}].weight", "must be between 0 and 1"))
        if not bad and abs(sum(ws) - 1.0) > WEIGHT_TOLERANCE:
            e.append(field_error("arms", f"weights must sum to 1 (they sum to {sum(ws):.6g})"))
        weights = ws

    metrics = spec.metrics
    names = [m.name for m in metrics]
    if len(metrics) > MAX_METRICS:
        e.append(field_error("metrics", f"at most {MAX_METRICS} metrics"))
    if names.count(PRIMARY_METRIC) != 1:
        e.append(field_error("metrics", f"exactly one metric must be named {PRIMARY_METRIC!r}"))
    for i, m in enumerate(metrics):
        if not KEY_PATTERN.match(m.name):
            e.append(
                field_error(f"metrics[{i}].name", f"{m.name!r} must match {KEY_PATTERN.pattern}")
            )
        if names.count(m.name) > 1 and names.index(m.name) != i:
            e.append(field_error(f"metrics[{i}].name", f"duplicate metric {m.name!r}"))
        tolerances = [t for t in (m.max_degradation, m.max_relative_degradation) if t is not None]
        if m.name == PRIMARY_METRIC and tolerances:
            e.append(
                field_error(f"metrics[{i}]", "the primary metric takes no degradation tolerance")
            )
        if len(tolerances) > 1:
            e.append(
                field_error(
                    f"metrics[{i}]", "give max_degradation or max_relative_degradation, not both"
                )
            )
        for name in ("max_degradation", "max_relative_degradation"):
            value = getattr(m, name)
            if _finite(e, f"metrics[{i}].{name}", value) and value < 0:
                e.append(field_error(f"metrics[{i}].{name}", "must be ≥ 0"))

    if len(spec.targeting) > MAX_RULES:
        e.append(field_error("targeting", f"at most {MAX_RULES} rules"))
    for i, rule in enumerate(spec.targeting):
        where = f"targeting[{i}]"
        if not 1 <= len(rule.attribute) <= 64:
            e.append(field_error(f"{where}.attribute", "must be 1 to 64 characters"))
        if rule.op in ("in", "not_in"):
            if rule.values is None or rule.value is not None:
                e.append(field_error(f"{where}.values", f"op {rule.op!r} takes a list `values`"))
            elif len(rule.values) > MAX_RULE_VALUES:
                e.append(field_error(f"{where}.values", f"at most {MAX_RULE_VALUES} values"))
        else:
            if rule.values is not None or rule.value is None:
                e.append(field_error(f"{where}.value", f"op {rule.op!r} takes a single `value`"))
            elif isinstance(rule.value, dict | list):
                e.append(field_error(f"{where}.value", "must be a string, number or boolean"))
            elif rule.op in ("gt", "gte", "lt", "lte") and (
                isinstance(rule.value, bool) or not isinstance(rule.value, int | float | str)
            ):
                e.append(
                    field_error(f"{where}.value", f"op {rule.op!r} compares numbers or strings")
                )

    def in_range(field: str, value: float | None, lo: float, hi: float, text: str) -> None:
        if _finite(e, field, value) and value is not None and not lo <= value <= hi:
            e.append(field_error(field, text))

    in_range("traffic_fraction", spec.traffic_fraction, 0.0, 1.0, "must be between 0 and 1")
    in_range(
        "confidence_level", spec.confidence_level, 0.5, 0.9999, "must be between 0.5 and 0.9999"
    )
    in_range("p_best_threshold", spec.p_best_threshold, 0.5, 1.0, "must be between 0.5 and 1")
    if arms:
        in_range(
            "min_arm_weight",
            spec.min_arm_weight,
            0.0,
            1.0 / len(arms) - 1e-9,
            f"must be ≥ 0 and below 1/{len(arms)} (one over the number of arms)",
        )
    if spec.min_exposures_per_arm < 0:
        e.append(field_error("min_exposures_per_arm", "must be ≥ 0"))
    if (
        _finite(e, "loss_threshold", spec.loss_threshold)
        and spec.loss_threshold is not None
        and spec.loss_threshold < 0
    ):
        e.append(field_error("loss_threshold", "must be ≥ 0"))
    if spec.max_exposures is not None and spec.max_exposures < 1:
        e.append(field_error("max_exposures", "must be ≥ 1"))
    if (
        _finite(e, "max_duration_s", spec.max_duration_s)
        and spec.max_duration_s is not None
        and spec.max_duration_s <= 0
    ):
        e.append(field_error("max_duration_s", "must be > 0"))
    if spec.alerts_url is not None and (
        not re.match(r"^https?://[^\s]+$", spec.alerts_url) or len(spec.alerts_url) > 2048
    ):
        e.append(field_error("alerts_url", "must be an http(s) URL of at most 2048 characters"))

    stages = spec.stages
    if spec.policy != "rollout":
        if stages is not None:
            e.append(field_error("stages", "only `rollout` experiments have stages"))
    else:
        stages = stages if stages is not None else [Stage(share=s) for s in DEFAULT_STAGES]
        if not stages:
            e.append(field_error("stages", "needs at least one stage"))
        previous = 0.0
        for i, stage in enumerate(stages):
            if not _finite(e, f"stages[{i}].share", stage.share):
                continue
            if not previous < stage.share <= 1.0:
                e.append(
                    field_error(
                        f"stages[{i}].share",
                        "shares must increase strictly, each in (0, 1]",
                    )
                )
            previous = stage.share
            if (
                _finite(e, f"stages[{i}].min_duration_s", stage.min_duration_s)
                and stage.min_duration_s < 0
            ):
                e.append(field_error(f"stages[{i}].min_duration_s", "must be ≥ 0"))
            if stage.min_exposures < 0:
                e.append(field_error(f"stages[{i}].min_exposures", "must be ≥ 0"))
        if stages and stages[-1].share != 1.0:
            e.append(field_error("stages", "the last stage must have share 1.0"))

    if e:
        first = e[0]
        raise Invalid(
            f"Invalid experiment: `{first['field']}` {first['message']}"
            + (f" (and {len(e) - 1} more problem(s), see `extra`)." if len(e) > 1 else "."),
            extra=e,
        )
    if spec.policy == "rollout":
        assert stages is not None
        control = controls[0]
        weights = [0.0, 0.0]
        weights[1 - control] = stages[0].share
        weights[control] = 1.0 - stages[0].share
    assert weights is not None
    normalised_arms = [
        msgspec.structs.replace(a, weight=w) for a, w in zip(arms, weights, strict=True)
    ]
    return msgspec.structs.replace(spec, arms=normalised_arms, stages=stages)


def default_metrics() -> list[Metric]:
    """A binary primary metric, maximised, when none is given."""
    return [Metric(name=PRIMARY_METRIC, type="binary", direction="maximize")]
