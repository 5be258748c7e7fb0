"""Hostile input against a live server: schemathesis over every operation of /schema with valid
and invalid keys (no 5xx, no hang), body and header size limits, bounds on every list and
string, and clients that stall without blocking anyone else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import HOST, Cluster, bearer, create_running, experiment, http

pytestmark = pytest.mark.slow

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
MIN_CASES_WITH_VALID_KEY = 1000


def _schemathesis(url: str, key: str, report: Path, *, max_time_s: int) -> tuple[int, str]:
    """Run schemathesis (checks: not_a_server_error) with a time budget; (cases, output)."""
    argv = [
        SCHEMATHESIS, "run", url + "/schema",
        "--checks", "not_a_server_error",
        "--header", f"Authorization: Bearer {key}",
        "--phases", "coverage,fuzzing,stateful",
        "--max-examples", "40",
        "--max-time", str(max_time_s),
        "--request-timeout", "5",  # a hang is a failure
        "--seed", "20261122",
        "--generation-database", "none",
        "--workers", "1",  # hypothesis' lambda descriptions (ast.parse) are not thread-safe
        "--no-color",
        "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=max_time_s + 60, cwd=report.parent
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "5xx" not in out and "Server error" not in out, out[-6000:]
    found = re.search(r"(\d+) generated", out)
    assert found, out[-3000:]
    return int(found.group(1)), out


def test_schemathesis_finds_no_server_error(cluster: Cluster, tmp_path: Path) -> None:
    """Every operation in /schema, with an admin key (≥ 1000 cases) and with an invalid key:
    no 5xx, no request over 5 s."""
    c = cluster
    a = c.server("a")
    schema = httpx.get(a.url + "/schema").json()
    operations = sum(len(v) for v in schema["paths"].values())

    async def seed() -> None:
        async with http(a.url) as client:
            await create_running(client, c.admin_key, experiment("exp", "thompson"))

    asyncio.run(seed())
    started = time.monotonic()
    valid, out = _schemathesis(a.url, c.admin_key, tmp_path / "valid.xml", max_time_s=45)
    assert valid >= MIN_CASES_WITH_VALID_KEY, out[-3000:]
    assert f"Tested: {operations}" in out, out[-3000:]
    bad_key = "crp_000000000000_" + "x" * 43
    invalid, out = _schemathesis(a.url, bad_key, tmp_path / "invalid.xml", max_time_s=10)
    assert a.proc is not None and a.proc.poll() is None
    assert "Traceback" not in a.log_text(), a.log_text()[-4000:]
    print(
        f"\n[schemathesis] {operations} operations; {valid} cases with an admin key, "
        f"{invalid} with an invalid key, in {time.monotonic() - started:.0f} s; no 5xx"
    )


def _raw(port: int, data: bytes, *, read_timeout_s: float = 5.0) -> bytes:
    """Send raw bytes, return whatever comes back before the server closes or goes quiet."""
    with socket.create_connection((HOST, port), timeout=read_timeout_s) as s:
        with contextlib.suppress(OSError):  # the server may answer and close before reading all
            s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except OSError:
            pass
        return b"".join(chunks)


def _status(raw: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


async def test_limits_and_slow_clients(cluster: Cluster) -> None:
    """Bodies over the limit get 413 (also chunked), an oversize header a 4xx or a closed
    connection (never a 5xx), every documented bound a clear 4xx naming the field, and 50
    clients stalled mid-headers or mid-body do not delay anyone else."""
    c = cluster
    a = c.server("a")
    report: dict[str, object] = {}
    async with http(a.url) as client:
        await create_running(client, c.admin_key, experiment("exp"))
        ak, dk = bearer(c.admin_key), bearer(c.decide_key)
        d = (
            await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=dk)
        ).json()

        # body size: over CROUPIER_MAX_BODY_BYTES (1 MiB) → 413, with or without Content-Length
        big = json.dumps([{"decision_id": d["decision_id"], "value": 1}] * 40_000).encode()
        assert len(big) > 1_048_576
        # announced too large: 413 at once, before the body is sent
        for path, key in (("/v1/rewards", c.decide_key), ("/v1/experiments", c.admin_key)):
            raw = await asyncio.to_thread(
                _raw,
                a.port,
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n[".encode(),
            )
            assert _status(raw) == 413, raw[:300]
        # sent in full: 413, or (a race the client can lose) the connection closed under it
        try:
            r = await client.post("/v1/rewards", content=big, headers=dk)
            assert r.status_code == 413, r.text
            report["full_oversize_body"] = 413
        except httpx.TransportError as exc:
            report["full_oversize_body"] = f"connection closed ({type(exc).__name__})"

        # chunked (no Content-Length): the server answers 413 once the limit is passed
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(big[i : i + 65536]), big[i : i + 65536])
            for i in range(0, len(big), 65536)
        )
        raw = await asyncio.to_thread(
            _raw,
            a.port,
            b"POST /v1/rewards HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + c.decide_key.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n",
        )
        assert _status(raw) == 413, raw[:300]
        # the decide route's own, smaller limit (64 KiB)
        raw = await asyncio.to_thread(
            _raw,
            a.port,
            b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + c.decide_key.encode()
            + b"\r\nContent-Length: 70000\r\n\r\n"
            + b" " * 70_000,
        )
        assert _status(raw) == 413, raw[:300]

        # bounds on every list and string → 4xx naming the field
        bounded = [
            ("/v1/decide", {"experiment": "exp", "unit_id": "u" * 100_00}, dk),
            ("/v1/decide", {"experiment": "exp", "unit_id": "u",
                            "context": {f"k{i}": i for i in range(1000)}}, dk),
            ("/v1/decide", {"experiment": "e" * 65, "unit_id": "u"}, dk),
            ("/v1/rewards", [{"decision_id": d["decision_id"], "value": 1}] * 1001, dk),
            ("/v1/rewards", {"decision_id": "x" * 65, "value": 1}, dk),
            ("/v1/rewards", {"decision_id": d["decision_id"], "value": 1,
                             "idempotency_key": "k" * 129}, dk),
            ("/v1/experiments", experiment("many", arms=33), ak),
            ("/v1/experiments", experiment("k" * 65), ak),
            ("/v1/experiments", {**experiment("cfg"), "arms": [
                {"key": "a", "control": True, "config": {"p": "x" * 17_000}}, {"key": "b"}]}, ak),
        ]  # fmt: skip
        for path, body, headers in bounded:
            r = await client.post(path, json=body, headers=headers)
            assert 400 <= r.status_code < 500 and r.status_code != 413, (path, r.text[:300])
            assert r.json()["detail"], r.text

        # an oversize header: a 4xx or a closed connection, never a 5xx; the server lives on
        for size in (64 * 1024, 1024 * 1024):
            raw = await asyncio.to_thread(
                _raw,
                a.port,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n",
            )
            status = _status(raw)
            report[f"header_{size // 1024}KiB"] = status or "connection closed"
            assert status is None or status < 500 or (status == 200 and size < 1024 * 1024)
            if size >= 1024 * 1024:
                assert status is None or 400 <= status < 500
        r = await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u"},
                              headers={"Authorization": "Bearer " + "x" * 50_000})  # fmt: skip
        assert r.status_code == 401

        # 25 clients stalled mid-headers and 25 mid-body: others are served as usual
        stalled = []
        for i in range(50):
            s = socket.create_connection((HOST, a.port))
            if i % 2:
                s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Le")
            else:
                s.sendall(
                    b"POST /v1/rewards HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    + c.decide_key.encode()
                    + b'\r\nContent-Length: 1000\r\n\r\n[{"decision_id"'
                )
            stalled.append(s)
        try:
            await asyncio.sleep(0.2)
            latencies = []
            for i in range(50):
                t = time.monotonic()
                r = await client.post(
                    "/v1/decide", json={"experiment": "exp", "unit_id": f"w{i}"}, headers=dk
                )
                latencies.append(time.monotonic() - t)
                assert r.status_code == 200
            r = await client.post(
                "/v1/rewards", json={"decision_id": d["decision_id"], "value": 1}, headers=dk
            )
            assert r.status_code == 202
            report["p_max_latency_with_50_stalled_ms"] = round(max(latencies) * 1000)
            assert max(latencies) < 1.0
        finally:
            for s in stalled:
                s.close()
        assert (await client.get("/readyz")).status_code == 200
    assert a.proc is not None and a.proc.poll() is None
    print(f"\n[limits] {report}")
