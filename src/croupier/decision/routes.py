"""`POST /v1/decide` — the hot path, as a lean ASGI route inside the Litestar app.

It bypasses Litestar's signature modelling, dependency injection and response building (which
cost more than the decision itself): it reads the body, checks the key against the in-process
cache, decodes with a msgspec decoder made once, decides against the in-process snapshot and
sends a msgspec-encoded Struct. No database or Redis round trip (see decide.py for the one
exception, sticky `thompson`).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from litestar import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from croupier.auth import AUTH_MESSAGES, AuthResult, KeyCache
from croupier.decision.decide import Decider
from croupier.decision.policy_cache import PolicyCache
from croupier.decision.schemas import DecideRequest
from croupier.errors import CroupierError, error_bytes
from croupier.web import decode_json

DECIDE_PATH = "/v1/decide"
MAX_DECIDE_BODY_BYTES = 65_536
_EXAMPLE = '{"experiment": "<key>", "unit_id": "<id>", "context": {...}}'
_JSON_HEADERS = [(b"content-type", b"application/json")]


class DecideRuntime(Protocol):
    """What the decide route needs from the process runtime."""

    cache: PolicyCache
    keys: KeyCache
    decider: Decider
    metrics: Any


def make_decide_route(runtime: DecideRuntime) -> ASGIRouteHandler:
    """Build the decide route bound to this process's snapshot, key cache and decider."""
    cache, keys = runtime.cache, runtime.keys
    decoder = msgspec.json.Decoder(DecideRequest)
    encode = msgspec.json.Encoder().encode

    async def respond(send: Send, status: int, body: bytes, extra_headers: Any = ()) -> None:
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def fail(
        send: Send, status: int, detail: str, extra: list[dict[str, Any]] | None = None
    ) -> None:
        await respond(send, status, error_bytes(status, detail, extra))

    @asgi(DECIDE_PATH, copy_scope=False)
    async def decide_route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # type: ignore[typeddict-item]
            await respond(
                send,
                405,
                error_bytes(405, f"{scope['method']} is not allowed on {DECIDE_PATH}; use POST."),  # type: ignore[typeddict-item]
                [(b"allow", b"POST")],
            )
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        code, _key_id = keys.check(authorization, need="decide")
        if code != AuthResult.OK:
            status, detail = AUTH_MESSAGES[code]
            await fail(send, status, detail)
            return

        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_DECIDE_BODY_BYTES:
                await fail(
                    send,
                    413,
                    f"The decide body is larger than {MAX_DECIDE_BODY_BYTES} bytes; "
                    "send a smaller `context`.",
                )
                return
        try:
            request = decode_json(body, decoder, example=_EXAMPLE)
        except CroupierError as exc:
            await fail(send, exc.status_code, exc.detail, exc.extra)
            return

        policy = cache.policies.get(request.experiment)
        if policy is None:
            await fail(
                send,
                404,
                f"No experiment with key {request.experiment!r}; create it with "
                "POST /v1/experiments or check the key.",
            )
            return
        decider = runtime.decider
        result = decider.decide(policy, request.unit_id, request.context)
        if result is None:
            result = await decider.decide_async(policy, request.unit_id)
        if runtime.metrics is not None:
            runtime.metrics.decision(policy.key, result.arm, result.reason)
        await respond(send, 200, encode(result))

    return decide_route
