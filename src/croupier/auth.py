"""API keys: generation, hashing, and the per-process cache every request is checked against.

A key looks like `crp_<id>_<secret>`. Only sha256(key) is stored. The cache maps the public id
to (scope, hash); a presented key is hashed and compared with `hmac.compare_digest`, so the
comparison takes the same time whatever the key. Revocations reach every process through the
feed (Redis pub/sub, else PostgreSQL polling) within a second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

Scope = Literal["decide", "admin"]
SCOPES: tuple[Scope, ...] = ("decide", "admin")
KEY_PREFIX = "crp_"


def hash_key(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).digest()


def generate_key() -> tuple[str, str, bytes]:
    """A new (key id, full key, hash). The full key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, key, hash_key(key)


def key_id_of(key: str) -> str | None:
    """The public id inside a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    parts = key[len(KEY_PREFIX) :].split("_", 1)
    if len(parts) != 2 or len(parts[0]) != 12:
        return None
    return parts[0]


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What the cache knows of one key."""

    scope: str
    secret_hash: bytes
    revoked: bool


class AuthResult:
    """Outcome codes of `KeyCache.check`."""

    OK = 0
    MISSING = 1
    INVALID = 2
    FORBIDDEN = 3


class KeyCache:
    """key id → KeyEntry, replaced as a whole on every refresh."""

    def __init__(self) -> None:
        self.entries: dict[str, KeyEntry] = {}

    def replace_all(self, entries: dict[str, KeyEntry]) -> None:
        """Install a fresh copy of the key table."""
        self.entries = entries

    def check(self, authorization: str | None, *, need: Scope) -> tuple[int, str | None]:
        """(AuthResult code, key id). `admin` keys may also decide."""
        if not authorization:
            return AuthResult.MISSING, None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return AuthResult.INVALID, None
        token = token.strip()
        key_id = key_id_of(token)
        entry = self.entries.get(key_id) if key_id else None
        presented = hash_key(token)
        stored = entry.secret_hash if entry else b"\x00" * 32
        if not hmac.compare_digest(presented, stored) or entry is None or entry.revoked:
            return AuthResult.INVALID, None
        if need == "admin" and entry.scope != "admin":
            return AuthResult.FORBIDDEN, key_id
        return AuthResult.OK, key_id


AUTH_MESSAGES = {
    AuthResult.MISSING: (
        401,
        "Missing API key: send `Authorization: Bearer <key>`; create one with "
        "`croupier keys create --scope decide`.",
    ),
    AuthResult.INVALID: (
        401,
        "Invalid or revoked API key: check the key, or create a new one with "
        "`croupier keys create`.",
    ),
    AuthResult.FORBIDDEN: (
        403,
        "This API key has scope `decide`; admin endpoints need a key created with "
        "`croupier keys create --scope admin`.",
    ),
}
