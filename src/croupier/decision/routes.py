"""`POST /v1/decide` — the hot path, a lean ASGI route.

`CroupierApp` dispatches it before Litestar's router (and Litestar also routes to it, for
variants of the path such as a trailing slash). It bypasses Litestar's routing, signature
modelling, dependency injection and response building, which cost more than the decision
itself: it checks the key against the in-process cache, reads the body, decodes with a msgspec
decoder made once, decides against the in-process snapshot and sends a msgspec-encoded Struct.
No database or Redis round trip (see decide.py for the one exception, sticky `thompson`).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from croupier.auth import KeyCache
from croupier.decision.decide import Decider
from croupier.decision.policy_cache import PolicyCache
from croupier.decision.schemas import DecideRequest
from croupier.errors import NotFound
from croupier.lean import LeanRoute, post_route
from croupier.web import decode_json

DECIDE_PATH = "/v1/decide"
MAX_DECIDE_BODY_BYTES = 65_536
_EXAMPLE = '{"experiment": "<key>", "unit_id": "<id>", "context": {...}}'


class DecideRuntime(Protocol):
    """What the decide route needs from the process runtime."""

    cache: PolicyCache
    keys: KeyCache
    decider: Decider
    metrics: Any


def make_decide_route(runtime: DecideRuntime) -> LeanRoute:
    """Build the decide route bound to this process's snapshot, key cache and decider."""
    cache, keys = runtime.cache, runtime.keys
    decoder = msgspec.json.Decoder(DecideRequest)
    encode = msgspec.json.Encoder().encode

    async def decide(body: bytes) -> bytes:
        request = decode_json(body, decoder, example=_EXAMPLE)
        policy = cache.policies.get(request.experiment)
        if policy is None:
            raise NotFound(
                f"No experiment with key {request.experiment!r}; create it with "
                "POST /v1/experiments or check the key."
            )
        decider = runtime.decider
        result = decider.decide(policy, request.unit_id, request.context)
        if result is None:
            result = await decider.decide_async(policy, request.unit_id)
        if runtime.metrics is not None:
            runtime.metrics.decision(policy.key, result.arm, result.reason)
        return encode(result)

    return post_route(keys, decide, status=200, max_body_bytes=MAX_DECIDE_BODY_BYTES, what="decide")
