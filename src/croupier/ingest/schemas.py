"""Request and response bodies of `POST /v1/rewards`."""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_REWARDS_PER_REQUEST = 1000


class RewardIn(msgspec.Struct, forbid_unknown_fields=True):
    """One outcome for one decision."""

    decision_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    value: float
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "reward"
    idempotency_key: Annotated[str, msgspec.Meta(max_length=128)] | None = None


RewardBatch = Annotated[
    list[RewardIn], msgspec.Meta(min_length=1, max_length=MAX_REWARDS_PER_REQUEST)
]
RewardBody = RewardIn | RewardBatch


class RewardsAccepted(msgspec.Struct):
    """Rewards durably committed: newly written and identical repeats."""

    accepted: int
    duplicates: int
