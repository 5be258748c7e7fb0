"""The `croupier` command: serve | migrate | optimizer | keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import click

from croupier.settings import Settings

logger = logging.getLogger("croupier.cli")


def _settings(**flags: Any) -> Settings:
    """Environment first, then the flags given on the command line."""
    settings = Settings.from_env()
    changes = {k: v for k, v in flags.items() if v is not None}
    return settings.replace(**changes) if changes else settings


@contextlib.contextmanager
def _services(settings: Settings) -> Iterator[Settings]:
    """Settings with both URLs filled in, starting the embedded servers when a URL is missing.

    Embedded servers started here are stopped on exit; servers already running for the same
    data dir (a `serve` in another shell) are reused and left running.
    """
    if not settings.uses_embedded:
        yield settings
        return
    from croupier.storage.embedded import EmbeddedServices

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedServices(settings.data_dir, log=lambda m: logger.info("%s", m))
    urls = embedded.start()
    try:
        yield settings.replace(
            database_url=settings.database_url or urls.database_url,
            redis_url=settings.redis_url or urls.redis_url,
        )
    finally:
        embedded.stop()


async def _migrate(dsn: str) -> list[str]:
    from croupier.storage.migrate import migrate_url

    return await migrate_url(dsn)


async def _bootstrap_admin_key(dsn: str) -> str | None:
    """On an empty key table, create an admin key and return it (shown once)."""
    from croupier.storage.keys import count_keys, create_key

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE api_keys IN EXCLUSIVE MODE")
            if await count_keys(conn):
                return None
            _, key = await create_key(conn, "admin", "bootstrap admin")
            return key
    finally:
        await conn.close()


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


_common = [
    click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                 help="Embedded PostgreSQL/Redis data (env CROUPIER_DATA_DIR; ./.croupier)."),
    click.option("--database-url", default=None,
                 help="External PostgreSQL URL (env CROUPIER_DATABASE_URL)."),
    click.option("--redis-url", default=None, help="External Redis URL (env CROUPIER_REDIS_URL)."),
]


def common_options(fn: Any) -> Any:
    """--data-dir, --database-url, --redis-url."""
    for option in reversed(_common):
        fn = option(fn)
    return fn


@click.group()
@click.version_option(package_name="croupier")
def main() -> None:
    """Croupier: an async multi-armed-bandit and experimentation server."""


@main.command()
@common_options
@click.option("--host", default=None, help="Bind address (env CROUPIER_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env CROUPIER_PORT, default 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (env CROUPIER_WORKERS).")
def serve(
    data_dir: Path | None, database_url: str | None, redis_url: str | None,
    host: str | None, port: int | None, workers: int | None,
) -> None:
    """Migrate and serve; with no URLs, on embedded PostgreSQL and Redis under --data-dir."""
    settings = _settings(
        data_dir=data_dir, database_url=database_url, redis_url=redis_url, host=host, port=port,
        workers=workers,
    )
    _setup_logging(settings.log_level)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Before the server takes over its signals, a SIGTERM must still stop what we started.
        stopping["signal"] = signum  # type: ignore[assignment]
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with _services(settings) as ready:
            assert ready.database_url is not None
            applied = asyncio.run(_migrate(ready.database_url))
            if applied:
                click.echo(f"applied migrations: {', '.join(applied)}", err=True)
            key = asyncio.run(_bootstrap_admin_key(ready.database_url))
            if key is not None:
                click.echo(
                    "\nNo API keys existed, so an admin key was created. It is shown only this "
                    f"once; keep it:\n\n    {key}\n",
                    err=True,
                )
            _run_server(ready)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class OptimizerProcess:
    """The optimizer of `croupier serve`: `croupier optimizer` in a child process of its own.

    Serving workers never run the optimizer, so its CPU (statistics, scipy) never competes
    with the decision hot path for a worker's GIL. The child is the same leader-elected loop
    as a standalone `croupier optimizer`; it exits by itself if `serve` dies (it watches its
    parent), and is restarted if it dies while `serve` runs.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.settings.to_env()}
        return subprocess.Popen(
            [
                sys.executable, "-m", "croupier.cli", "optimizer",
                "--parent-pid", str(os.getpid()),
                # not needed (the URLs are in the environment); shows whose optimizer it is
                "--data-dir", str(self.settings.data_dir),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            # a Ctrl-C in the terminal reaches serve, which stops the child in order
            start_new_session=True,
        )

    def start(self) -> None:
        """Start the child and a thread that restarts it if it dies while serving."""
        with self._lock:
            self.proc = self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="croupier-optimizer-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            if proc is None:
                return
            code = proc.wait()
            if self._stopping.wait(1.0):
                return
            logger.warning("optimizer process exited with %s; restarting it", code)
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._spawn()

    def stop(self) -> None:
        """SIGTERM the child (it finishes its cycle and releases the lock); kill it if late."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.settings.optimizer_shutdown_s + 10)
            except subprocess.TimeoutExpired:
                logger.warning("optimizer process did not stop in time; killing it")
                proc.kill()
                proc.wait()


def _run_server(settings: Settings) -> None:
    """Run the ASGI server (granian) with workers that build the app from the environment,
    and the optimizer in a child process of its own (`OptimizerProcess`)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    os.environ.update(settings.to_env())
    # the workers serve only; the optimizer runs in its own process
    os.environ["CROUPIER_OPTIMIZER_ENABLED"] = "0"
    click.echo(
        f"Croupier serving on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker(s)"
        + (", optimizer in its own process)" if settings.optimizer_enabled else ")"),
        err=True,
    )
    optimizer = OptimizerProcess(settings) if settings.optimizer_enabled else None
    server = Granian(
        "croupier.app:create_app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        backlog=2048,
        workers_kill_timeout=30,
        # a client that opens a connection and dribbles its headers is cut off after this
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.http_header_read_timeout_s * 1000)
        ),
    )
    if optimizer is not None:
        optimizer.start()
    try:
        server.serve()
    finally:
        if optimizer is not None:
            optimizer.stop()


@main.command()
@common_options
def migrate(data_dir: Path | None, database_url: str | None, redis_url: str | None) -> None:
    """Apply pending database migrations."""
    settings = _settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    _setup_logging("WARNING")
    with _services(settings) as ready:
        assert ready.database_url is not None
        applied = asyncio.run(_migrate(ready.database_url))
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` when the process that started us is gone (we were re-parented)."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            logger.warning("parent process %d is gone; the optimizer stops", parent_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()


def _lower_priority(nice: int) -> None:
    """Yield the CPU to the serving workers (see Settings.optimizer_nice). The child runs in a
    session of its own, and with Linux's scheduler autogroups (on by default) niceness only
    ranks processes of one session: the session's own autogroup niceness is lowered as well."""
    os.nice(nice)
    with contextlib.suppress(OSError):  # not Linux, no autogroups, or not permitted
        Path("/proc/self/autogroup").write_text(str(min(nice, 19)))


async def _run_optimizer(settings: Settings, *, parent_pid: int | None = None) -> None:
    """Run the leader-elected optimizer loop alone until SIGTERM or SIGINT (or, with
    `parent_pid`, until that process is gone)."""
    import redis.asyncio as aioredis

    from croupier.optimizer.loop import Optimizer
    from croupier.storage.db import create_pool
    from croupier.storage.migrate import migrate as run_migrations
    from croupier.storage.redis_keys import RedisKeys

    assert settings.database_url is not None and settings.redis_url is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # changes are written up to 8 at a time (optimizer.tick), plus the statistics read
    pool = await create_pool(settings.database_url, min_size=1, max_size=10)
    watcher = (
        asyncio.create_task(_watch_parent(parent_pid, stop), name="croupier-parent-watch")
        if parent_pid is not None
        else None
    )
    redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)
    if parent_pid is not None and settings.optimizer_nice > 0:
        _lower_priority(settings.optimizer_nice)
    try:
        async with pool.acquire() as conn:
            await run_migrations(conn)
        optimizer = Optimizer(
            settings, pool=pool, redis=redis, redis_keys=RedisKeys(settings.redis_prefix)
        )
        await optimizer.start()
        click.echo(
            f"Croupier optimizer running every {settings.optimizer_interval_s:g} s "
            "(leader-elected; Ctrl-C or SIGTERM stops it)",
            err=True,
        )
        try:
            await stop.wait()
        finally:
            await optimizer.stop()
    finally:
        if watcher is not None:
            stop.set()
            await watcher
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await redis.aclose()
        await pool.close()


@main.command()
@common_options
@click.option("--interval", "optimizer_interval_s", type=float, default=None,
              help="Seconds between cycles (env CROUPIER_OPTIMIZER_INTERVAL_S, default 5).")
@click.option("--parent-pid", type=int, default=None, hidden=True,
              help="Stop when this process is gone (used by `croupier serve`).")
def optimizer(
    data_dir: Path | None, database_url: str | None, redis_url: str | None,
    optimizer_interval_s: float | None, parent_pid: int | None,
) -> None:
    """Run the optimizer alone (leader-elected: any number may run, one optimizes)."""
    settings = _settings(
        data_dir=data_dir, database_url=database_url, redis_url=redis_url,
        optimizer_interval_s=optimizer_interval_s,
    )
    _setup_logging(settings.log_level)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # while the embedded servers start, SIGTERM must still stop what we started
        stopping["signal"] = signum  # type: ignore[assignment]
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with _services(settings) as ready:
            signal.signal(signal.SIGTERM, previous)
            asyncio.run(_run_optimizer(ready, parent_pid=parent_pid))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


async def _with_conn(dsn: str, fn: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        await _migrate_conn(conn)
        return await fn(conn)
    finally:
        await conn.close()


async def _migrate_conn(conn: asyncpg.Connection) -> None:
    from croupier.storage.migrate import migrate as run

    await run(conn)


async def _notify_keys_changed(settings: Settings) -> None:
    """Tell running servers to reload keys at once (they also poll within a second)."""
    import redis.asyncio as aioredis

    from croupier.storage.redis_keys import RedisKeys
    from croupier.storage.snapshot import publish_keys_changed

    assert settings.redis_url is not None
    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await publish_keys_changed(client, RedisKeys(settings.redis_prefix))
    finally:
        await client.aclose()


@keys.command("create")
@common_options
@click.option("--scope", type=click.Choice(["decide", "admin"]), required=True)
@click.option("--name", default=None, help="A label to recognise the key by.")
def keys_create(
    data_dir: Path | None, database_url: str | None, redis_url: str | None, scope: str,
    name: str | None,
) -> None:
    """Create a key; the key alone is printed on the last line of stdout."""
    from croupier.storage.keys import create_key

    settings = _settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    _setup_logging("WARNING")
    with _services(settings) as ready:
        assert ready.database_url is not None
        key_id, key = asyncio.run(
            _with_conn(ready.database_url, lambda c: create_key(c, scope, name))
        )
        with contextlib.suppress(Exception):  # running servers also poll within a second
            asyncio.run(_notify_keys_changed(ready))
    click.echo(f"created {scope} key {key_id}" + (f" ({name})" if name else ""), err=True)
    click.echo(key)


@keys.command("list")
@common_options
def keys_list(data_dir: Path | None, database_url: str | None, redis_url: str | None) -> None:
    """List keys (ids, scopes, names; never secrets)."""
    from croupier.storage.keys import list_keys

    settings = _settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    _setup_logging("WARNING")
    with _services(settings) as ready:
        assert ready.database_url is not None
        rows = asyncio.run(_with_conn(ready.database_url, list_keys))
    click.echo(f"{'id':<14}{'scope':<8}{'created':<27}{'revoked':<27}name")
    for r in rows:
        revoked = r["revoked_at"].isoformat(timespec="seconds") if r["revoked_at"] else "-"
        click.echo(
            f"{r['id']:<14}{r['scope']:<8}{r['created_at'].isoformat(timespec='seconds'):<27}"
            f"{revoked:<27}{r['name'] or ''}"
        )


@keys.command("revoke")
@common_options
@click.argument("key_id")
def keys_revoke(
    data_dir: Path | None, database_url: str | None, redis_url: str | None, key_id: str
) -> None:
    """Revoke a key by id; servers refuse it within a second."""
    from croupier.storage.keys import revoke_key

    settings = _settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    _setup_logging("WARNING")
    with _services(settings) as ready:
        assert ready.database_url is not None
        done = asyncio.run(_with_conn(ready.database_url, lambda c: revoke_key(c, key_id)))
        if done:
            with contextlib.suppress(Exception):
                asyncio.run(_notify_keys_changed(ready))
    if not done:
        click.echo(f"no active key with id {key_id!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
