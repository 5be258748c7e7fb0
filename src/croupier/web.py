"""Shared Litestar pieces: the API-key guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from croupier.auth import AUTH_MESSAGES, AuthResult, Scope
from croupier.errors import Forbidden, Unauthorized

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def require_scope(scope: Scope) -> Guard:
    """A guard admitting keys of `scope` (admin keys are admitted everywhere)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        keys = connection.app.state.runtime.keys
        code, key_id = keys.check(connection.headers.get("authorization"), need=scope)
        if code == AuthResult.OK:
            connection.state.key_id = key_id
            return
        status, detail = AUTH_MESSAGES[code]
        raise (Forbidden if status == 403 else Unauthorized)(detail)

    return guard


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The audit actor of an authenticated request."""
    key_id = getattr(connection.state, "key_id", None)
    return f"key:{key_id}" if key_id else "anonymous"
