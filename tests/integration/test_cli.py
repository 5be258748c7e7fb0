"""`croupier serve` as a user runs it: one command on the embedded servers, state kept across
restarts, `keys create` beside a running server, and SIGTERM leaving no orphaned process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow

CROUPIER = [sys.executable, "-m", "croupier.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    """The user's environment without any Croupier URL: the embedded default."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_")}


def _processes_under(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(data_dir) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _optimizer_children(serve_pid: int) -> list[psutil.Process]:
    """The `croupier optimizer` processes that `croupier serve` (pid `serve_pid`) started."""
    try:
        children = psutil.Process(serve_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [
        c for c in children
        if "optimizer" in (c.cmdline() or []) and c.status() != psutil.STATUS_ZOMBIE
    ]


class Server:
    """A `croupier serve` subprocess with its stderr in a file."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        with log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [*CROUPIER, "serve", "--data-dir", str(data_dir), "--port", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_env(),
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become ready:\n" + log.read_text())

    def admin_key(self) -> str | None:
        match = re.search(r"crp_[A-Za-z0-9_-]+", self.log.read_text())
        return match.group(0) if match else None

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def test_serve_keys_restart_and_sigterm(tmp_path: Path) -> None:
    """The embedded default keeps state across restarts, serves keys created beside it, and
    SIGTERM stops the server and both embedded servers with nothing left running."""
    data_dir = tmp_path / "data"
    server = Server(data_dir, tmp_path / "serve1.log")
    try:
        admin = server.admin_key()
        assert admin, server.log.read_text()
        h = {"Authorization": f"Bearer {admin}"}
        body = {"key": "greeting", "policy": "fixed",
                "arms": [{"key": "a", "control": True}, {"key": "b"}]}
        assert httpx.post(server.url + "/v1/experiments", json=body, headers=h).status_code == 201
        started = httpx.post(server.url + "/v1/experiments/greeting/start", headers=h)
        assert started.status_code == 200
        out = subprocess.run(
            [*CROUPIER, "keys", "create", "--scope", "decide", "--data-dir", str(data_dir)],
            capture_output=True, text=True, env=_env(), timeout=60, check=True,
        )
        decide_key = out.stdout.strip().splitlines()[-1]
        assert decide_key.startswith("crp_")
        deadline = time.monotonic() + 1.0  # a new key reaches running servers within 1 s
        while True:
            r = httpx.post(
                server.url + "/v1/decide", json={"experiment": "greeting", "unit_id": "u1"},
                headers={"Authorization": f"Bearer {decide_key}"},
            )
            if r.status_code != 401 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200 and r.json()["reason"] == "allocated", r.text
        assert server.proc.poll() is None  # keys create did not stop the shared servers
        # the optimizer runs in a process of its own, not in the serving worker
        optimizers = _optimizer_children(server.proc.pid)
        assert len(optimizers) == 1, [c.cmdline() for c in optimizers]
        assert optimizers[0].is_running()
    finally:
        server.terminate()
    assert server.proc.returncode == 0, server.log.read_text()
    assert not optimizers[0].is_running() or optimizers[0].status() == psutil.STATUS_ZOMBIE
    time.sleep(0.5)
    assert _processes_under(data_dir) == []

    again = Server(data_dir, tmp_path / "serve2.log")
    try:
        assert again.admin_key() is None  # keys exist: no new admin key is printed
        r = httpx.get(again.url + "/v1/experiments/greeting", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "running"
        r = httpx.get(again.url + "/v1/experiments/greeting/results", headers=h)
        assert sum(a["exposures"] for a in r.json()["arms"]) == 1  # the flushed decision
    finally:
        again.terminate()
    time.sleep(0.5)
    assert _processes_under(data_dir) == []


def test_migrate_and_keys_list_on_the_embedded_default(tmp_path: Path) -> None:
    """`croupier migrate` and `keys list|revoke` work alone and leave nothing running."""
    data_dir = tmp_path / "data"
    out = subprocess.run(
        [*CROUPIER, "migrate", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=_env(), timeout=120, check=True,
    )
    assert "0001_initial.sql" in out.stdout
    out = subprocess.run(
        [*CROUPIER, "migrate", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=_env(), timeout=60, check=True,
    )
    assert "up to date" in out.stdout
    created = subprocess.run(
        [*CROUPIER, "keys", "create", "--scope", "admin", "--name", "ops",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=_env(), timeout=60, check=True,
    )
    key_id = created.stdout.strip().split("_")[1]
    listed = subprocess.run(
        [*CROUPIER, "keys", "list", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=_env(), timeout=60, check=True,
    )
    assert key_id in listed.stdout and "ops" in listed.stdout
    assert created.stdout.strip().split("_", 2)[2] not in listed.stdout  # never the secret
    revoked = subprocess.run(
        [*CROUPIER, "keys", "revoke", key_id, "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=_env(), timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert _processes_under(data_dir) == []
