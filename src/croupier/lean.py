"""Raw ASGI plumbing of the lean routes, `POST /v1/decide` and `POST /v1/rewards`.

These two routes carry nearly all of a deployment's traffic. `CroupierApp` (app.py) hands them
the request before Litestar's router, middleware and response machinery, which would cost
more than the work the routes do. What Litestar would give them is done here instead, once:
reading a bounded body, answering JSON, and turning any exception into the same error body
(`errors.describe_error`) that every other route answers with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar.types import Receive, Scope, Send

from croupier.auth import KeyCache
from croupier.errors import TooLarge, describe_error, error_bytes
from croupier.web import authenticate

LeanRoute = Callable[[Scope, Receive, Send], Awaitable[None]]

_CONTENT_TYPE = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its body arrived; there is no one to answer."""


def auth_and_length(scope: Scope) -> tuple[str | None, str | None]:
    """The request's `Authorization` and `Content-Length` header values (one pass)."""
    authorization = length = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"content-length":
            length = value.decode("latin-1")
    return authorization, length


async def read_body(receive: Receive, announced: str | None, limit: int, what: str) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed `limit`
    bytes: at once from the announced Content-Length, otherwise while the chunks arrive.

    With a Content-Length, the body is complete once that many bytes have arrived. Some
    servers (granian) send the last chunk with `more_body` true and then an empty closing
    message; not waiting for it saves a round trip to the server's I/O thread per request."""
    expected = int(announced) if announced is not None and announced.isdigit() else -1
    if expected > limit:
        raise _too_large(limit, what)
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) or len(body) == expected:  # the common case
        if len(body) > limit:
            raise _too_large(limit, what)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, what)
        chunks.append(chunk)
        if not message.get("more_body", False) or size == expected:
            return b"".join(chunks)


def _too_large(limit: int, what: str) -> TooLarge:
    return TooLarge(
        f"The {what} body is larger than {limit} bytes; send a smaller body or fewer items."
    )


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer with a complete JSON body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, scope: Scope, exc: Exception) -> None:
    """Answer with the error body `describe_error` gives for `exc` (logged there if a 500)."""
    method: str = scope.get("method", "")  # type: ignore[assignment]
    status, detail, extra, headers = describe_error(exc, method, scope["path"])
    encoded: list[tuple[bytes, bytes]] = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    await send_json(send, status, error_bytes(status, detail, extra), encoded)


async def method_not_allowed(send: Send, scope: Scope, allowed: str) -> None:
    """405 naming the method to use."""
    method: Any = scope.get("method")
    detail = f"{method} is not allowed on {scope['path']}; use {allowed}."
    await send_json(send, 405, error_bytes(405, detail), [(b"allow", allowed.encode())])


def post_route(
    keys: KeyCache,
    handle: Callable[[bytes], Awaitable[bytes]],
    *,
    status: int,
    max_body_bytes: int,
    what: str,
) -> LeanRoute:
    """A lean POST route for decide-scope keys: `handle` turns the request body into the
    JSON answer sent with `status`; whatever it raises becomes the usual error body."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # type: ignore[typeddict-item]
            await method_not_allowed(send, scope, "POST")
            return
        try:
            authorization, length = auth_and_length(scope)
            authenticate(keys, authorization, "decide")
            answer = await handle(await read_body(receive, length, max_body_bytes, what))
        except ClientGone:
            return
        except Exception as exc:
            await send_error(send, scope, exc)
            return
        await send_json(send, status, answer)

    return route
