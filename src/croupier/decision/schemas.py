"""Request and response bodies of `POST /v1/decide`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

UNIT_ID_MAX = 256
CONTEXT_MAX_KEYS = 64


class DecideRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Ask which arm to use for one unit."""

    experiment: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    unit_id: Annotated[str, msgspec.Meta(min_length=1, max_length=UNIT_ID_MAX)]
    context: Annotated[dict[str, Any], msgspec.Meta(max_length=CONTEXT_MAX_KEYS)] | None = None


class DecideResponse(msgspec.Struct):
    """The decision: which arm, its configuration, and how it was chosen."""

    decision_id: str
    experiment: str
    arm: str
    config: msgspec.Raw
    propensity: float
    reason: str
