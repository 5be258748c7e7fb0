"""`POST /v1/rewards`: validate the whole list, attribute each reward from its decision id,
commit through the group-commit buffer, answer 202 only after commit.

A lean ASGI route like decide (see croupier.lean): the reward route is the second-busiest."""

from __future__ import annotations

import math
from typing import Any, Protocol

import msgspec

from croupier.auth import KeyCache
from croupier.decision.ids import DecisionIdCodec
from croupier.decision.policy_cache import Policy, PolicyCache
from croupier.errors import BadRequest, Conflict, Invalid, field_error
from croupier.ingest.buffer import RewardBuffer
from croupier.ingest.schemas import RewardBody, RewardIn, RewardsAccepted
from croupier.lean import LeanRoute, post_route
from croupier.storage.reward_writer import Refused, RewardItem, Written
from croupier.web import decode_json

REWARDS_PATH = "/v1/rewards"
_decoder = msgspec.json.Decoder(RewardBody)
_EXAMPLE = '{"decision_id": "<from /v1/decide>", "value": 1} or a list of up to 1000 of them'


def _invalid(index: int, field: str, message: str) -> Invalid:
    return Invalid(
        f"Item {index}: {message} Nothing was written; fix the item and resend the request.",
        extra=[field_error(field, message, index=index)],
    )


async def _validate(rt: RewardsRuntime, items: list[RewardIn]) -> list[RewardItem]:
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


class RewardsRuntime(Protocol):
    """What the rewards route needs from the process runtime."""

    keys: KeyCache
    codec: DecisionIdCodec
    cache: PolicyCache
    rewards: RewardBuffer
    metrics: Any

    async def policy_for_id(self, experiment_id: int) -> Policy | None: ...


def make_rewards_route(runtime: RewardsRuntime, *, max_body_bytes: int) -> LeanRoute:
    """Build `POST /v1/rewards`, a lean ASGI route like decide (see croupier.lean).

    One reward or a list of up to 1000. Answered 202 only after the rewards are committed.
    At most one value per (decision_id, metric): the same value again is a duplicate, a
    different value is refused with 409. One bad item rejects the whole list."""
    keys = runtime.keys
    encode = msgspec.json.Encoder().encode

    async def ingest(body: bytes) -> RewardsAccepted:
        metrics = runtime.metrics
        try:
            data = decode_json(body, _decoder, example=_EXAMPLE)
        except (BadRequest, Invalid):
            if metrics is not None:
                metrics.rejected(1)  # unreadable body: one rejection, its items are unknown
            raise
        items = [data] if isinstance(data, RewardIn) else data
        try:
            prepared = await _validate(runtime, items)
        except Invalid:
            if metrics is not None:
                metrics.rejected(len(items))
            raise
        outcome = await runtime.rewards.submit(prepared)
        if isinstance(outcome, Refused):
            if metrics is not None:
                metrics.rejected(len(items))
            extra = [field_error(outcome.field, outcome.detail, index=outcome.index)]
            detail = outcome.detail + " Nothing from this request was written."
            raise (Conflict if outcome.status == 409 else Invalid)(detail, extra=extra)
        assert isinstance(outcome, Written)
        if metrics is not None:
            metrics.rewards(outcome.accepted, outcome.duplicates)
        return RewardsAccepted(accepted=outcome.accepted, duplicates=outcome.duplicates)

    async def handle(body: bytes) -> bytes:
        return encode(await ingest(body))

    return post_route(keys, handle, status=202, max_body_bytes=max_body_bytes, what="rewards")
