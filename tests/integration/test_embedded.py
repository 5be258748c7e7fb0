"""The embedded PostgreSQL and Redis: durable state, reuse across processes, clean stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from croupier.storage.embedded import EmbeddedServices, EmbeddedUrls

pytestmark = pytest.mark.slow


def _server_processes(data_dir: Path) -> list[psutil.Process]:
    """Live postgres/redis-server processes whose command line or working dir is in data_dir."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if not proc.name().startswith(("postgres", "redis-server")):
                continue
            cmdline = " ".join(proc.cmdline())
            cwd = proc.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if str(data_dir) in cmdline or Path(cwd).is_relative_to(data_dir):
            found.append(proc)
    return found


def _assert_no_server_left(data_dir: Path, pids: set[int]) -> None:
    assert _server_processes(data_dir) == []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"pid {pid} survived"


async def _sql(database_url: str, *statements: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        for statement in statements[:-1]:
            await conn.execute(statement)
        rows = await conn.fetch(statements[-1])
        return [str(row[0]) for row in rows]
    finally:
        await conn.close()


def _redis_get(redis_url: str, key: str) -> bytes | None:
    client = redis.Redis.from_url(redis_url)
    try:
        value = client.get(key)
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        client.close()


def _both_answer(urls: EmbeddedUrls) -> bool:
    client = redis.Redis.from_url(urls.redis_url)
    try:
        pong = bool(client.ping())
    finally:
        client.close()
    return pong and asyncio.run(_sql(urls.database_url, "SELECT 1")) == ["1"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose servers are killed at teardown should a test leave any behind."""
    path = (tmp_path / "croupier-data").resolve()
    yield path
    for proc in _server_processes(path):
        proc.kill()


def test_state_survives_restart_and_stop_leaves_no_process(data_dir: Path) -> None:
    """A row and a key written before stop() are found after a new start(), and stop() leaves
    no postgres or redis-server process of the data directory running."""
    services = EmbeddedServices(data_dir)
    urls = services.start()
    try:
        assert urls.database_url.startswith("postgresql://postgres@127.0.0.1:")
        assert urls.database_url.endswith("/croupier")
        assert urls.redis_url.startswith("redis://127.0.0.1:")
        rows = asyncio.run(
            _sql(
                urls.database_url,
                "CREATE TABLE kept (v text)",
                "INSERT INTO kept VALUES ('row')",
                "SELECT v FROM kept",
            )
        )
        assert rows == ["row"]
        client = redis.Redis.from_url(urls.redis_url)
        try:
            client.set("kept", "key")
        finally:
            client.close()
        pids = {proc.pid for proc in _server_processes(data_dir)}
        names = {psutil.Process(pid).name() for pid in pids}
        assert "postgres" in names
        assert any(name.startswith("redis-server") for name in names)
    finally:
        services.stop()
    _assert_no_server_left(data_dir, pids)

    with EmbeddedServices(data_dir) as again:
        assert asyncio.run(_sql(again.database_url, "SELECT v FROM kept")) == ["row"]
        assert _redis_get(again.redis_url, "kept") == b"key"
    _assert_no_server_left(data_dir, set())


def test_second_instance_reuses_servers_and_leaves_them_running(data_dir: Path) -> None:
    """A second EmbeddedServices on a running data directory gets the same URLs, its stop()
    leaves the servers running, and the first one's stop() stops them."""
    first = EmbeddedServices(data_dir)
    urls = first.start()
    try:
        second = EmbeddedServices(data_dir)
        assert second.start() == urls
        second.stop()
        assert _both_answer(urls)
        pids = {proc.pid for proc in _server_processes(data_dir)}
    finally:
        first.stop()
    _assert_no_server_left(data_dir, pids)


def test_other_process_reuses_servers_and_leaves_them_running(data_dir: Path) -> None:
    """A separate process (as `croupier keys create` beside `serve`) reuses the running servers
    and does not stop them when it exits."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from croupier.storage.embedded import EmbeddedServices
        with EmbeddedServices(Path(sys.argv[1])) as urls:
            print(urls.database_url)
            print(urls.redis_url)
        """
    )
    with EmbeddedServices(data_dir) as urls:
        child = subprocess.run(
            [sys.executable, "-c", script, str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert child.stdout.split() == [urls.database_url, urls.redis_url]
        assert _both_answer(urls)
    _assert_no_server_left(data_dir, set())


def test_stale_pidfiles_after_sigkill_do_not_block_start(data_dir: Path) -> None:
    """After SIGKILL of every server process, the stale postmaster.pid and redis pidfile do not
    prevent a new start, committed rows are recovered, and the crashed instance's stop() leaves
    the new servers alone."""
    services = EmbeddedServices(data_dir)
    urls = services.start()
    try:
        asyncio.run(
            _sql(
                urls.database_url,
                "CREATE TABLE kept (v text)",
                "INSERT INTO kept VALUES ('row')",
                "SELECT count(*) FROM kept",
            )
        )
        victims = _server_processes(data_dir)
        for proc in victims:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        assert (data_dir / "postgres" / "postmaster.pid").exists()
        assert (data_dir / "redis" / "redis.pid").exists()

        with EmbeddedServices(data_dir) as again:
            assert asyncio.run(_sql(again.database_url, "SELECT v FROM kept")) == ["row"]
            assert _redis_get(again.redis_url, "absent") is None
            pids = {proc.pid for proc in _server_processes(data_dir)}
            services.stop()  # the crashed instance's stop must not touch the new servers
            assert _both_answer(again)
            assert (data_dir / "postgres" / "postmaster.pid").exists()
            assert (data_dir / "redis" / "redis.pid").exists()
    finally:
        services.stop()
    _assert_no_server_left(data_dir, pids)


def test_pidfiles_naming_an_unrelated_live_process_are_ignored(data_dir: Path) -> None:
    """Pidfiles whose pid now belongs to another live process (a recycled pid) are treated as
    stale rather than as a running server."""
    crashed = EmbeddedServices(data_dir)
    crashed.start()
    victims = _server_processes(data_dir)
    for proc in victims:
        proc.kill()
    psutil.wait_procs(victims, timeout=10)
    crashed.stop()  # reaps its dead children
    stranger = str(os.getpid())
    pid_file = data_dir / "postgres" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pid_file.write_text("\n".join([stranger, *lines[1:]]) + "\n")
    (data_dir / "redis" / "redis.pid").write_text(stranger + "\n")

    with EmbeddedServices(data_dir) as urls:
        assert _both_answer(urls)
    _assert_no_server_left(data_dir, set())


def test_servers_of_a_killed_starter_are_adopted_and_stopped(data_dir: Path) -> None:
    """When the process that started the servers dies by SIGKILL, the next EmbeddedServices
    adopts them and its stop() leaves nothing running."""
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from croupier.storage.embedded import EmbeddedServices
        urls = EmbeddedServices(Path(sys.argv[1])).start()
        print(urls.database_url, flush=True)
        time.sleep(600)
        """
    )
    starter = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        database_url = starter.stdout.readline().strip()
    finally:
        starter.kill()
        starter.wait(timeout=10)
        if starter.stdout is not None:
            starter.stdout.close()
    orphans = {proc.pid for proc in _server_processes(data_dir)}
    assert orphans

    adopter = EmbeddedServices(data_dir)
    urls = adopter.start()
    assert urls.database_url == database_url
    assert _both_answer(urls)
    started = time.monotonic()
    adopter.stop()
    assert time.monotonic() - started < 12
    _assert_no_server_left(data_dir, orphans)
