"""API key rows: create, list, revoke (used by the CLI and the first-start bootstrap)."""

from __future__ import annotations

from typing import Any

from croupier.auth import SCOPES, generate_key
from croupier.storage.db import Executor
from croupier.storage.queries import Q


async def create_key(conn: Executor, scope: str, name: str | None) -> tuple[str, str]:
    """Store a new key; returns (key id, full key). The full key is not stored anywhere."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    key_id, key, digest = generate_key()
    await conn.execute(Q["key_insert"], key_id, name, scope, digest)
    return key_id, key


async def list_keys(conn: Executor) -> list[dict[str, Any]]:
    """All keys (never their secrets)."""
    return [dict(r) for r in await conn.fetch(Q["key_list"])]


async def revoke_key(conn: Executor, key_id: str) -> bool:
    """Revoke a key by id; False if no active key has that id."""
    return await conn.fetchval(Q["key_revoke"], key_id) is not None


async def count_keys(conn: Executor) -> int:
    """How many keys exist (revoked included)."""
    return int(await conn.fetchval(Q["key_count"]))
