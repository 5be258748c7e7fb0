"""Shared route pieces: authentication (the guard of Litestar routes) and strict JSON decoding."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from croupier.auth import AUTH_MESSAGES, AuthResult, KeyCache, Scope
from croupier.errors import (
    BadRequest,
    Forbidden,
    Invalid,
    Unauthorized,
    field_error,
    split_msgspec_error,
)

T = TypeVar("T")

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def authenticate(keys: KeyCache, authorization: str | None, need: Scope) -> str | None:
    """The key id of a request's `Authorization` header admitted for `need`; 401/403 otherwise.

    The one authentication check: the guard of Litestar routes and the lean routes call it."""
    code, key_id = keys.check(authorization, need=need)
    if code == AuthResult.OK:
        return key_id
    status, detail = AUTH_MESSAGES[code]
    raise (Forbidden if status == 403 else Unauthorized)(detail)


def require_scope(scope: Scope) -> Guard:
    """A guard admitting keys of `scope` (admin keys are admitted everywhere)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # async on purpose: Litestar runs synchronous guards in a thread pool
        keys = connection.app.state.runtime.keys
        connection.state.key_id = authenticate(keys, connection.headers.get("authorization"), scope)

    return guard


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The audit actor of an authenticated request."""
    key_id = getattr(connection.state, "key_id", None)
    return f"key:{key_id}" if key_id else "anonymous"


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T], *, example: str) -> T:
    """Strictly decode a request body; 400 for broken JSON, 422 naming the field otherwise."""
    if not body.strip():
        raise BadRequest(f"The request body is empty; send a JSON body like {example}.")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        path, reason = split_msgspec_error(str(exc))
        index: int | None = None
        field = path
        m = re.match(r"^\[(\d+)\]\.?(.*)$", path)
        if m:
            index, field = int(m.group(1)), m.group(2)
        extra = field_error(field, reason) | ({"index": index} if index is not None else {})
        where = (
            f"item {index}" + (f", field `{field}`" if field else "")
            if index is not None
            else (f"field `{field}`" if field else "body")
        )
        raise Invalid(f"Invalid request at {where}: {reason}.", extra=[extra]) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON ({exc}); send a JSON body like {example}."
        ) from None
