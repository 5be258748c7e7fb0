"""The auth matrix on a live server: every route of /schema x {no key, malformed key, revoked
key, decide key, admin key} gets exactly the intended class of answer, revocation by the CLI
takes effect within a second, and no key appears in logs, error bodies or the database."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from tests.faults.conftest import Cluster, bearer, create_running, experiment, http, wait_for

pytestmark = pytest.mark.slow

# Operations routes need no key: /healthz, /readyz, /schema (+ /schema/openapi.json) and any
# other route outside /v1 the schema lists (/metrics, /ui).
OPEN = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/schema"),
    ("GET", "/schema/openapi.json"),
}
# Routes a `decide` key may call (everything else needs an admin key, as SPEC §2 lists).
DECIDE_SCOPE = {("POST", "/v1/decide"), ("POST", "/v1/rewards")}


def _revoke(c: Cluster, key: str) -> None:
    """`croupier keys revoke ID`, as an operator would, against this cluster."""
    key_id = key.split("_")[1]
    done = subprocess.run(
        [sys.executable, "-m", "croupier.cli", "keys", "revoke", key_id,
         "--database-url", c.database_url, "--redis-url", c.redis.url],
        capture_output=True, text=True, timeout=60, env=c.servers[0].env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def _create_key(c: Cluster, scope: str) -> str:
    from croupier.storage.keys import create_key

    conn = await c.connect()
    try:
        return (await create_key(conn, scope, f"to revoke ({scope})"))[1]
    finally:
        await conn.close()


async def test_auth_matrix_on_every_route(cluster: Cluster) -> None:
    """No/malformed/revoked key → 401 everywhere but the open operations routes; a decide key →
    403 on admin routes; decide and admin keys pass auth where intended; never a 5xx; no key in
    the server's log, any response body, or the api_keys table."""
    c = cluster
    a = c.server("a")
    revoked_decide = await _create_key(c, "decide")
    revoked_admin = await _create_key(c, "admin")
    async with http(a.url) as client:
        await create_running(client, c.admin_key, experiment("exp"))
        for key in (revoked_decide, revoked_admin):
            await wait_for(lambda k=key: _accepted(client, k), timeout_s=2)
        revocation_s = 0.0
        for key in (revoked_decide, revoked_admin):
            await asyncio.to_thread(_revoke, c, key)
            took = await wait_for(lambda k=key: _refused(client, k), timeout_s=1.0)
            revocation_s = max(revocation_s, took)

        schema = (await client.get("/schema")).json()
        routes = sorted(
            (method.upper(), path)
            for path, item in schema["paths"].items()
            for method in item
            if method in ("get", "post", "patch", "put", "delete")
        )
        routes = sorted(set(routes) | OPEN)
        wrong_secret = c.admin_key[:-4] + ("AAAA" if not c.admin_key.endswith("AAAA") else "BBBB")
        credentials: dict[str, dict[str, str]] = {
            "none": {},
            "not bearer": {"Authorization": "Basic " + c.admin_key},
            "garbage": {"Authorization": "Bearer nonsense"},
            "unknown id": {"Authorization": "Bearer crp_000000000000_" + "x" * 43},
            "wrong secret": bearer(wrong_secret),
            "revoked decide": bearer(revoked_decide),
            "revoked admin": bearer(revoked_admin),
            "decide": bearer(c.decide_key),
            "admin": bearer(c.admin_key),
        }
        bodies: list[str] = []
        mismatches = []
        for method, template in routes:
            path = template.replace("{key}", "gone" if method == "DELETE" else "exp")
            for name, headers in credentials.items():
                r = await client.request(
                    method, path, headers=headers, json={} if method in ("POST", "PATCH") else None
                )
                bodies.append(r.text)
                if (method, template) in OPEN or not template.startswith("/v1/"):
                    ok = r.status_code == 200
                elif name in ("decide", "admin"):
                    allowed = name == "admin" or (method, template) in DECIDE_SCOPE
                    ok = (
                        (r.status_code not in (401, 403) and r.status_code < 500)
                        if allowed
                        else (r.status_code == 403)
                    )
                else:
                    ok = r.status_code == 401
                if r.status_code >= 400:
                    ok = ok and bool(r.json().get("detail"))
                if not ok:
                    mismatches.append((method, path, name, r.status_code, r.text[:200]))
        assert mismatches == [], mismatches

    secrets = [c.admin_key, c.decide_key, revoked_decide, revoked_admin]
    secret_parts = [k.split("_", 2)[2] for k in secrets]
    for text in [*bodies, a.log_text()]:
        for secret in secret_parts:
            assert secret not in text
    rows = await c.fetch("SELECT * FROM api_keys")
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert not any(s in stored for s in secret_parts)
    print(
        f"\n[auth] {len(routes)} routes x {len(credentials)} credentials = "
        f"{len(routes) * len(credentials)} requests as intended; refused at most "
        f"{revocation_s:.2f} s after `keys revoke`; no key in logs, bodies or the database"
    )


async def _accepted(client: httpx.AsyncClient, key: str) -> bool:
    r = await client.post(
        "/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=bearer(key)
    )
    return r.status_code == 200


async def _refused(client: httpx.AsyncClient, key: str) -> bool:
    r = await client.post(
        "/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=bearer(key)
    )
    return r.status_code == 401
