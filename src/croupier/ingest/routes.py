"""`POST /v1/rewards`: validate the whole list, attribute each reward from its decision id,
commit through the group-commit buffer, answer 202 only after commit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, post

from croupier.errors import BadRequest, Conflict, Invalid, field_error
from croupier.ingest.schemas import RewardBody, RewardIn, RewardsAccepted
from croupier.storage.reward_writer import Refused, RewardItem, Written
from croupier.web import decode_json, require_scope

if TYPE_CHECKING:
    from croupier.runtime import Runtime


_decoder = msgspec.json.Decoder(RewardBody)
_EXAMPLE = '{"decision_id": "<from /v1/decide>", "value": 1} or a list of up to 1000 of them'


def _invalid(index: int, field: str, message: str) -> Invalid:
    return Invalid(
        f"Item {index}: {message} Nothing was written; fix the item and resend the request.",
        extra=[field_error(field, message, index=index)],
    )


async def _validate(rt: Runtime, items: list[RewardIn]) -> list[RewardItem]:
    """Turn the request into attributed items, or raise 422 naming the first bad item."""
    out: list[RewardItem] = []
    for index, item in enumerate(items):
        ref = rt.codec.decode(item.decision_id)
        if ref is None:
            raise _invalid(
                index,
                "decision_id",
                f"decision_id {item.decision_id!r} is malformed or was not issued by this server.",
            )
        policy = rt.cache.by_id.get(ref.experiment_id) or await rt.policy_for_id(ref.experiment_id)
        if policy is None or ref.arm_index >= len(policy.arm_keys):
            raise _invalid(
                index,
                "decision_id",
                f"decision_id {item.decision_id!r} belongs to an experiment that no longer exists.",
            )
        metric_type = policy.metric_types.get(item.metric)
        if metric_type is None:
            known = ", ".join(sorted(policy.metric_types))
            raise _invalid(
                index,
                "metric",
                f"unknown metric {item.metric!r} for experiment {policy.key!r}; "
                f"it defines: {known}.",
            )
        if not math.isfinite(item.value):
            raise _invalid(index, "value", "value must be a finite number (not NaN or infinity).")
        if metric_type == "binary" and item.value not in (0.0, 1.0):
            raise _invalid(
                index,
                "value",
                f"metric {item.metric!r} is binary: value must be 0 or 1, got {item.value!r}.",
            )
        out.append(
            RewardItem(
                item.decision_id,
                item.metric,
                ref.experiment_id,
                ref.arm_index,
                ref.counted,
                float(item.value),
                item.idempotency_key,
                index,
            )
        )
    return out


@post(
    "/v1/rewards",
    status_code=202,
    guards=[require_scope("decide")],
    summary="Report rewards",
    description=(
        "One reward or a list of up to 1000. Answered 202 only after the rewards are committed."
        " At most one value per (decision_id, metric): the same value again is a duplicate, a "
        "different value is refused with 409. One bad item rejects the whole list."
    ),
)
async def post_rewards(request: Request[Any, Any, Any]) -> RewardsAccepted:
    """Validate, attribute and commit rewards."""
    rt: Runtime = request.app.state.runtime
    try:
        data = decode_json(await request.body(), _decoder, example=_EXAMPLE)
    except (BadRequest, Invalid):
        if rt.metrics is not None:
            rt.metrics.rejected(1)  # unreadable body: one rejection, its items are unknown
        raise
    items = [data] if isinstance(data, RewardIn) else data
    try:
        prepared = await _validate(rt, items)
    except Invalid:
        if rt.metrics is not None:
            rt.metrics.rejected(len(items))
        raise
    outcome = await rt.rewards.submit(prepared)
    if isinstance(outcome, Refused):
        if rt.metrics is not None:
            rt.metrics.rejected(len(items))
        extra = [field_error(outcome.field, outcome.detail, index=outcome.index)]
        if outcome.status == 409:
            raise Conflict(outcome.detail + " Nothing from this request was written.", extra=extra)
        raise Invalid(outcome.detail + " Nothing from this request was written.", extra=extra)
    assert isinstance(outcome, Written)
    if rt.metrics is not None:
        rt.metrics.rewards(outcome.accepted, outcome.duplicates)
    return RewardsAccepted(accepted=outcome.accepted, duplicates=outcome.duplicates)
