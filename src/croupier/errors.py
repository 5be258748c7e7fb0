"""One error root and the single place where exceptions become HTTP responses.

Each error class's docstring is its default message; `status_code` is its HTTP status.
Every error body is `{"status_code", "detail", "extra"?}`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

logger = logging.getLogger("croupier.errors")


class CroupierError(Exception):
    """Something went wrong."""

    status_code: int = 500

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or (self.__doc__ or "Error.").strip()
        self.extra = extra
        self.headers = headers
        super().__init__(self.detail)


class BadRequest(CroupierError):
    """The request could not be read; send a JSON body as documented at /schema."""

    status_code = 400


class Unauthorized(CroupierError):
    """Send an API key as `Authorization: Bearer <key>`; create one with `croupier keys create`."""

    status_code = 401


class Forbidden(CroupierError):
    """This API key's scope does not allow this request."""

    status_code = 403


class NotFound(CroupierError):
    """Not found."""

    status_code = 404


class Conflict(CroupierError):
    """The request conflicts with the current state."""

    status_code = 409


class TooLarge(CroupierError):
    """The request body is too large; send a smaller body or fewer items."""

    status_code = 413


class Invalid(CroupierError):
    """The request is invalid; see `extra` for each offending field."""

    status_code = 422


class Unavailable(CroupierError):
    """The database is unavailable; retry shortly."""

    status_code = 503

    def __init__(self, detail: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


def field_error(field: str, message: str, **more: Any) -> dict[str, Any]:
    """One entry of an error body's `extra` list."""
    return {"field": field, "message": message, **more}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The JSON error body."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | None = None


_encoder = msgspec.json.Encoder()


def error_bytes(status_code: int, detail: str, extra: list[dict[str, Any]] | None = None) -> bytes:
    """Encode an error body (used by the lean routes, which bypass Litestar's responses)."""
    return _encoder.encode(ErrorBody(status_code=status_code, detail=detail, extra=extra))


def _from_validation(exc: ValidationException) -> tuple[str, list[dict[str, Any]] | None]:
    """Turn Litestar/msgspec validation failures into a sentence and a field list."""
    extra: list[dict[str, Any]] = []
    raw = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    for item in raw:
        if isinstance(item, dict):
            message = str(item.get("message", ""))
            key = item.get("key")
            field = str(key) if key else split_msgspec_error(message)[0]
            extra.append(field_error(field, message, source=str(item.get("source", "body"))))
    if extra:
        first = extra[0]
        kind = {"query": "query parameter", "path": "path parameter"}.get(first["source"], "field")
        where = f" {kind} `{first['field']}`" if first["field"] else " body"
        return f"Invalid{where}: {first['message']}.", extra
    detail = str(exc.detail)
    if "JSON" in detail or "decode" in detail.lower():
        return "The request body is not valid JSON; send a JSON object as documented.", None
    return detail, None


_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")


def split_msgspec_error(message: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.arms[0].weight`" → (path, reason)."""
    match = _MSGSPEC_PATH.search(message)
    if not match:
        return "", message
    return match.group(1).lstrip("."), message[: match.start()]


def _is_unavailable(exc: Exception) -> bool:
    """PostgreSQL unreachable (imported lazily: errors.py must not depend on storage)."""
    from croupier.storage.db import UNAVAILABLE_ERRORS

    return isinstance(exc, UNAVAILABLE_ERRORS)


def describe_error(
    exc: Exception, method: str, path: str
) -> tuple[int, str, list[dict[str, Any]] | None, dict[str, str] | None]:
    """(status, detail, extra, headers) of the error response for `exc`.

    The only place where an exception is turned into an HTTP error: used by Litestar's
    exception handler (`error_to_response`) and by the lean routes, which bypass Litestar.
    """
    status = 500
    headers: dict[str, str] | None = None
    extra: list[dict[str, Any]] | None = None
    if isinstance(exc, CroupierError):
        status, detail, extra, headers = exc.status_code, exc.detail, exc.extra, exc.headers
    elif _is_unavailable(exc):
        status, headers = 503, {"Retry-After": "1"}
        detail = "The database is unavailable right now; nothing was changed. Retry shortly."
        logger.warning("database unavailable on %s %s: %s", method, path, exc)
    elif isinstance(exc, ValidationException):
        status = 400
        detail, extra = _from_validation(exc)
        if extra:
            status = 422
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        detail = str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        if status == 404 and detail == "Not Found":
            detail = f"No route matches {method} {path}; see /schema."
        elif status == 405:
            detail = f"{method} is not allowed on {path}; see /schema."
        elif status == 413:
            detail = "The request body is too large; send a smaller body or fewer items."
    else:
        detail = "Internal server error; the incident was logged."
        logger.error("unhandled error on %s %s", method, path, exc_info=exc)
    return status, detail, extra, headers


def error_to_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's exception handler: every exception of a Litestar route becomes this."""
    status, detail, extra, headers = describe_error(exc, request.method, request.url.path)
    return Response(
        content=ErrorBody(status_code=status, detail=detail, extra=extra),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )
