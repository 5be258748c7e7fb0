"""Bad input on every endpoint gets a 4xx whose `detail` says what to fix — never a 5xx — and
a rejected request writes nothing."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body

TABLES = ("experiments", "arms", "allocations", "decisions", "rewards", "audit_log", "api_keys")
BIG = b'{"key": "' + b"x" * 1_100_000 + b'"}'
VALID = json.dumps(experiment_body("fresh")).encode()

# (method, path, scope, raw body or None, expected status)
CASES: list[tuple[str, str, str, bytes | None, int]] = [
    # decide
    ("POST", "/v1/decide", "decide", b"{not json", 400),
    ("POST", "/v1/decide", "decide", b"", 400),
    ("POST", "/v1/decide", "decide", b"[]", 422),
    ("POST", "/v1/decide", "decide", b'{"experiment": 1, "unit_id": "u"}', 422),
    ("POST", "/v1/decide", "decide", b'{"experiment": "exp"}', 422),
    ("POST", "/v1/decide", "decide", b'{"experiment": "exp", "unit_id": "u", "x": 1}', 422),
    ("POST", "/v1/decide", "decide", b'{"experiment": "exp", "unit_id": ""}', 422),
    (
        "POST",
        "/v1/decide",
        "decide",
        b'{"experiment": "exp", "unit_id": "' + b"u" * 300 + b'"}',
        422,
    ),
    ("POST", "/v1/decide", "decide", b'{"experiment": "exp", "unit_id": "u", "context": []}', 422),
    (
        "POST",
        "/v1/decide",
        "decide",
        b'{"experiment": "exp", "unit_id": "u", "context": {"a": NaN}}',
        400,
    ),
    ("POST", "/v1/decide", "decide", b'{"experiment": "nope", "unit_id": "u"}', 404),
    (
        "POST",
        "/v1/decide",
        "decide",
        b'{"experiment": "exp", "unit_id": "u", "context": {"a": "' + b"x" * 70_000 + b'"}}',
        413,
    ),
    ("GET", "/v1/decide", "decide", None, 405),
    # rewards
    ("POST", "/v1/rewards", "decide", b"{not json", 400),
    ("POST", "/v1/rewards", "decide", b"[]", 422),
    ("POST", "/v1/rewards", "decide", b'{"value": 1}', 422),
    ("POST", "/v1/rewards", "decide", b'{"decision_id": "abc", "value": 1}', 422),
    ("POST", "/v1/rewards", "decide", b'{"decision_id": "abc", "value": NaN}', 400),
    ("POST", "/v1/rewards", "decide", b'{"decision_id": "abc", "value": 1e999}', 422),
    ("POST", "/v1/rewards", "decide", b'{"decision_id": "abc", "value": true}', 422),
    (
        "POST",
        "/v1/rewards",
        "decide",
        json.dumps([{"decision_id": "a", "value": 1}] * 1001).encode(),
        422,
    ),
    ("POST", "/v1/rewards", "decide", BIG, 413),
    # experiments
    ("POST", "/v1/experiments", "admin", b"{not json", 400),
    ("POST", "/v1/experiments", "admin", b"null", 422),
    ("POST", "/v1/experiments", "admin", b'{"key": "a"}', 422),
    ("POST", "/v1/experiments", "admin", VALID.replace(b'"fixed"', b'"bandit"'), 422),
    ("POST", "/v1/experiments", "admin", VALID.replace(b'"fresh"', b"7"), 422),
    ("POST", "/v1/experiments", "admin", VALID[:-1] + b', "unknown_option": 1}', 422),
    ("POST", "/v1/experiments", "admin", VALID[:-1] + b', "traffic_fraction": NaN}', 400),
    ("POST", "/v1/experiments", "admin", VALID[:-1] + b', "traffic_fraction": 1e999}', 422),
    ("POST", "/v1/experiments", "admin", VALID.replace(b'"fresh"', b'"exp"'), 409),
    ("POST", "/v1/experiments", "admin", BIG, 413),
    ("GET", "/v1/experiments?status=bogus", "admin", None, 422),
    ("GET", "/v1/experiments/nope", "admin", None, 404),
    ("GET", "/v1/experiments/" + "x" * 100, "admin", None, 422),
    ("PATCH", "/v1/experiments/exp", "admin", b"{not json", 400),
    ("PATCH", "/v1/experiments/exp", "admin", b'{"arms": "x"}', 422),
    ("PATCH", "/v1/experiments/exp", "admin", b'{"key": "other"}', 422),
    (
        "PATCH",
        "/v1/experiments/exp",
        "admin",
        b'{"arms": [{"key": "a", "control": true}, {"key": "b"}]}',
        409,
    ),
    ("PATCH", "/v1/experiments/exp", "admin", b'{"traffic_fraction": 2}', 422),
    ("PATCH", "/v1/experiments/nope", "admin", b'{"name": "x"}', 404),
    ("DELETE", "/v1/experiments/exp", "admin", None, 409),
    ("POST", "/v1/experiments/exp/start", "admin", None, 409),
    ("POST", "/v1/experiments/exp/resume", "admin", None, 409),
    ("POST", "/v1/experiments/exp/archive", "admin", None, 409),
    ("POST", "/v1/experiments/exp/stop", "admin", b'{"winner": 3}', 422),
    ("POST", "/v1/experiments/exp/stop", "admin", b'{"winner": "nope"}', 422),
    ("POST", "/v1/experiments/exp/stop", "admin", b"{oops", 400),
    ("POST", "/v1/experiments/nope/start", "admin", None, 404),
    ("POST", "/v1/experiments/exp/explode", "admin", None, 404),
    ("GET", "/v1/experiments/nope/results", "admin", None, 404),
    ("GET", "/v1/experiments/nope/allocations", "admin", None, 404),
    ("GET", "/v1/audit?limit=0", "admin", None, 422),
    ("GET", "/v1/audit?limit=abc", "admin", None, 422),
    ("GET", "/v1/nothing-here", "admin", None, 404),
]


async def _counts(db: asyncpg.Connection) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


@pytest.mark.parametrize(("method", "path", "scope", "body", "status"), CASES)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    client: AsyncTestClient[Any],
    keys: dict[str, str],
    db: asyncpg.Connection,
    method: str,
    path: str,
    scope: str,
    body: bytes | None,
    status: int,
) -> None:
    """Each malformed request gets the documented status and an actionable detail."""
    admin = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=admin)
    await client.post("/v1/experiments/exp/start", headers=admin)
    before = await _counts(db)
    headers = {**auth(keys[scope]), "content-type": "application/json"}
    r = await client.request(method, path, content=body, headers=headers)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status_code"] == status
    assert isinstance(payload["detail"], str) and len(payload["detail"]) > 15, payload
    if status == 422 and "extra" in payload:
        assert all("message" in e for e in payload["extra"])
    await client.get("/healthz")
    assert await _counts(db) == before
