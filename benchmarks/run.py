"""Croupier's ratio benchmark: the decision hot path against a bare endpoint, and reward ingest.

One command (see benchmarks/README.md):

    python benchmarks/run.py [--workers N] [--duration S] [--server granian|uvicorn]
                             [--out benchmarks/results/latest.json] [--embedded] [--profile]

It creates a fresh PostgreSQL database (dropped at the end) and a random Redis prefix, starts
Croupier the way users do (`croupier serve`, or uvicorn on the same app factory), loads 100
running experiments through the HTTP API, and drives everything with wrk (1 thread, 64
connections) pinned to the last core, the server pinned to the other cores when there are
enough. Every figure is reported with the baseline measured in the same run: a bare Litestar
`GET /ping` (benchmarks/baseline_app.py) on the same server, worker count and pinning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "lua"
BIN = Path(sys.executable).parent
WRK_THREADS = 1
LOG_PATTERNS = re.compile(r"Traceback|ERROR|Exception| 500 |status_code\": ?500|CRITICAL")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Pinning:
    """Which cores wrk and the server run on, and why."""

    wrk_cpus: str
    server_cpus: str | None  # None: not pinned
    note: str

    @classmethod
    def plan(cls, workers: int) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(str(cpus[0]), None, "one core: wrk and the server share it (not pinned)")
        wrk_cpu = cpus[-1]
        rest = cpus[:-1]
        if workers <= len(rest):
            server = ",".join(str(c) for c in rest)
            return cls(
                str(wrk_cpu), server,
                f"wrk on core {wrk_cpu}; server (all {workers} worker(s)) on core(s) {server}; "
                "PostgreSQL and Redis are not pinned",
            )
        return cls(
            str(wrk_cpu), None,
            f"wrk on core {wrk_cpu}; the server is NOT pinned ({workers} workers on "
            f"{len(cpus)} cores: pinning them to the {len(rest)} core(s) left would measure "
            "fewer cores than workers), so wrk shares a core with a worker; PostgreSQL and "
            "Redis are not pinned",
        )

    def prefix(self) -> list[str]:
        return ["taskset", "-c", self.server_cpus] if self.server_cpus else []


class TreeMonitor:
    """Samples RSS and CPU time of a process and its descendants (peak RSS per process)."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_rss: dict[int, int] = {}
        self.optimizer_pids: set[int] = set()
        self.seen_children = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def processes(self) -> list[psutil.Process]:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in procs:
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in cmd or "semaphore_tracker" in cmd or p.name() == "taskset":
                continue
            out.append(p)
        return out

    def _sample(self) -> None:
        procs = self.processes()
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            self.peak_rss[p.pid] = max(rss, self.peak_rss.get(p.pid, 0))
            with contextlib.suppress(psutil.Error):
                if "optimizer" in p.cmdline():
                    self.optimizer_pids.add(p.pid)
        self.seen_children = self.seen_children or len(procs) > 1

    def role(self, pid: int) -> str:
        """A server with child processes is a supervisor plus workers (and `croupier serve`'s
        optimizer process); else one worker."""
        if pid == self.root.pid and self.seen_children:
            return "supervisor"
        with contextlib.suppress(psutil.Error):
            if "optimizer" in psutil.Process(pid).cmdline():
                return "optimizer"
        return "optimizer" if pid in self.optimizer_pids else "worker"

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes() if self.role(p.pid) == "worker"]

    def report(self) -> dict[str, Any]:
        workers = {pid: rss for pid, rss in self.peak_rss.items() if self.role(pid) == "worker"}
        sup = {pid: rss for pid, rss in self.peak_rss.items() if self.role(pid) == "supervisor"}
        opt = {pid: rss for pid, rss in self.peak_rss.items() if self.role(pid) == "optimizer"}
        return {
            "peak_rss_mib_optimizer": round(max(opt.values(), default=0) / 2**20, 1),
            "peak_rss_mib_per_worker": [round(r / 2**20, 1) for r in workers.values()],
            "peak_rss_mib_worker_max": round(max(workers.values(), default=0) / 2**20, 1),
            "peak_rss_mib_supervisor": round(max(sup.values(), default=0) / 2**20, 1),
        }


class Server:
    """A server subprocess with its log file, started pinned and stopped by its own pid."""

    def __init__(
        self, name: str, cmd: list[str], *, env: dict[str, str], cwd: Path, log_path: Path,
        pinning: Pinning,
    ) -> None:
        self.name = name
        self.cmd = [*pinning.prefix(), *cmd]
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.monitor: TreeMonitor | None = None

    def start(self) -> None:
        log(f"start {self.name}: {' '.join(self.cmd)}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.monitor = TreeMonitor(self.proc.pid)
        self.monitor.start()

    def wait_http(self, url: str, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}); see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout_s}s")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in 40 s; killing its process group")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.monitor is not None
        self.monitor.stop()
        self._log.close()
        return self.monitor.report()


def _service_cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid → (postgres|redis, CPU seconds so far) of the PostgreSQL and Redis processes."""
    out: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        name = p.info["name"] or ""
        kind = "postgres" if name.startswith("postgres") else "redis" if "redis" in name else None
        if kind and p.info["cpu_times"] is not None:
            out[p.pid] = (kind, p.info["cpu_times"].user + p.info["cpu_times"].system)
    return out


def _service_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds used between two snapshots (processes that exited meanwhile are lost:
    a lower bound; new processes count from zero)."""
    out = {"postgres": 0.0, "redis": 0.0}
    for pid, (kind, cpu) in after.items():
        out[kind] += cpu - before.get(pid, (kind, 0.0))[1]
    return out


QUIET = {"max_wait_s": 60.0, "threshold_pct": 20.0}


def wait_quiet() -> dict[str, float]:
    """Wait (bounded) until the machine is mostly idle between runs: other people's test
    suites on a shared machine are the largest source of noise."""
    t0 = time.monotonic()
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        waited = time.monotonic() - t0
        if busy < QUIET["threshold_pct"] or waited >= QUIET["max_wait_s"]:
            return {"busy_before_pct": busy, "waited_for_quiet_s": round(waited, 1)}
        time.sleep(1.0)


def run_wrk(
    script: str, url: str, *, duration_s: float, connections: int, pinning: Pinning,
    args: list[str] | None = None, env: dict[str, str] | None = None,
    monitor: TreeMonitor | None = None, label: str = "",
) -> dict[str, Any]:
    """One wrk run; returns the script's summary with req/s, latencies in ms and server CPU."""
    cmd = [
        "taskset", "-c", pinning.wrk_cpus, "wrk", f"-t{WRK_THREADS}", f"-c{connections}",
        f"-d{max(1, round(duration_s))}s", "--latency", "--timeout", "10s",
        "-s", str(LUA / script), url,
    ]
    if args:
        cmd += ["--", *args]
    quiet = wait_quiet() if monitor is not None else {}
    cpu0 = monitor.cpu_seconds() if monitor else 0.0
    cores0 = psutil.cpu_times(percpu=True)
    svc0 = _service_cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    wall = time.monotonic() - t0
    cpu1 = monitor.cpu_seconds() if monitor else 0.0
    cores1 = psutil.cpu_times(percpu=True)
    svc1 = _service_cpu_seconds()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    out: dict[str, Any] = {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "req_per_s": round(raw["requests"] / seconds, 1),
        "connections": connections,
        "p50_ms": raw["lat_p50_us"] / 1000,
        "p90_ms": raw["lat_p90_us"] / 1000,
        "p99_ms": raw["lat_p99_us"] / 1000,
        "p999_ms": raw["lat_p999_us"] / 1000,
        "mean_ms": round(raw["lat_mean_us"] / 1000, 3),
        "max_ms": raw["lat_max_us"] / 1000,
        "non_2xx": raw["errors_status"],
        "socket_errors": {k.removeprefix("errors_"): raw[k] for k in
                          ("errors_connect", "errors_read", "errors_write", "errors_timeout")},
    }
    for k in ("accepted", "duplicates", "answered_202", "wraps", "harvested"):
        if k in raw:
            out[k] = raw[k]
    if monitor is not None:
        out["server_cpu_cores_busy"] = round((cpu1 - cpu0) / wall, 2)
    svc = _service_delta(svc0, svc1)
    out["postgres_cpu_cores_busy"] = round(svc["postgres"] / wall, 2)
    out["redis_cpu_cores_busy"] = round(svc["redis"] / wall, 2)
    out["per_core_busy"] = [
        round(1 - (b.idle + b.iowait - a.idle - a.iowait) / max(1e-9, sum(b) - sum(a)), 2)
        for a, b in zip(cores0, cores1, strict=True)
    ]
    out["wrk_cpu_cores_busy"] = round(wrk_cpu, 2)
    out.update(quiet)
    if monitor is not None:
        # what else ran on the machine meanwhile (other people's tests, ...): a noise gauge
        out["other_cpu_cores_busy"] = round(
            sum(out["per_core_busy"]) - out["server_cpu_cores_busy"] - wrk_cpu
            - out["postgres_cpu_cores_busy"] - out["redis_cpu_cores_busy"], 2)
    if env and env.get("WRK_MEAN_DELAY_MS"):
        out["mean_think_ms"] = float(env["WRK_MEAN_DELAY_MS"])
    log(f"  {label or script}: {out['req_per_s']:.0f} req/s  p50 {out['p50_ms']:.2f} ms  "
        f"p99 {out['p99_ms']:.2f} ms  non-2xx {out['non_2xx']}  "
        f"cpu: server {out.get('server_cpu_cores_busy', '-')} wrk {out['wrk_cpu_cores_busy']} "
        f"pg {out['postgres_cpu_cores_busy']} other {out.get('other_cpu_cores_busy', '-')}"
        + (f" (waited {quiet['waited_for_quiet_s']} s for quiet)" if quiet else ""))
    return out


def paced_env(target_rps: float, connections: int, expected_latency_ms: float) -> dict[str, str]:
    """Think time per connection so that `connections` closed loops offer about target_rps.

    wrk is closed-loop (wrk2 is not packaged in Debian): each connection sends, waits for the
    answer, then waits an exponential think time. Offered rate ≈ connections / (latency + think).
    """
    think_ms = max(0.05, 1000.0 * connections / target_rps - expected_latency_ms)
    return {"WRK_MEAN_DELAY_MS": f"{think_ms:.3f}"}


def half_load(
    script: str, url: str, *, peak_rps: float, duration_s: float, connections: int,
    pinning: Pinning, args: list[str] | None, monitor: TreeMonitor | None, label: str,
) -> dict[str, Any]:
    """Latency at ~half of the saturated throughput (one correction of the think time)."""
    target = peak_rps / 2
    expected = 1.0
    short = max(3.0, duration_s / 3)
    probe = run_wrk(script, url, duration_s=short, connections=connections, pinning=pinning,
                    args=args, env=paced_env(target, connections, expected), monitor=monitor,
                    label=f"{label} (calibrate)")
    expected = probe["mean_ms"]
    out = run_wrk(script, url, duration_s=duration_s, connections=connections, pinning=pinning,
                  args=args, env=paced_env(target, connections, expected), monitor=monitor,
                  label=label)
    out["target_req_per_s"] = round(target, 1)
    out["fraction_of_peak"] = round(out["req_per_s"] / peak_rps, 3)
    return out


# --------------------------------------------------------------------------- state loading

MODELS = ["gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "llama-3.1-70b", "mistral-large",
          "gemini-2.0-flash", "qwen2.5-72b", "o3-mini"]
PROMPT = ("You are a concise, friendly support assistant for an online shop. Answer in the "
          "customer's language, cite the order number when there is one, never invent "
          "policies, and hand over to a human when the customer asks for a refund above {cap} EUR.")


def arm_config(rng: random.Random, i: int) -> dict[str, Any]:
    """A prompt/model configuration of a few hundred bytes."""
    return {
        "model": MODELS[i % len(MODELS)],
        "temperature": round(rng.uniform(0, 1.2), 2),
        "max_tokens": rng.choice([256, 512, 1024]),
        "system_prompt": PROMPT.format(cap=rng.choice([50, 100, 250])),
        "tools": rng.sample(["search", "orders", "refunds", "faq", "handover"], 3),
        "retrieval": {"top_k": rng.choice([3, 5, 8]), "index": f"kb-v{rng.randint(1, 9)}"},
    }


def experiment_bodies(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` experiments: 40% thompson (non-sticky), 40% fixed (sticky), 20% rollout."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = ("thompson", "thompson", "thompson", "thompson", "fixed", "fixed", "fixed",
                "fixed", "rollout", "rollout")[i % 10]
        n_arms = 2 if kind == "rollout" else rng.randint(2, 8)
        arms = [{"key": f"arm{j}", "config": arm_config(rng, j), "control": j == 0}
                for j in range(n_arms)]
        body: dict[str, Any] = {
            "key": f"bench.{kind}.{i:03d}",
            "name": f"Benchmark {kind} {i}",
            "policy": kind,
            "arms": arms,
            "metrics": [
                {"name": "reward", "type": "binary", "direction": "maximize"},
                {"name": "latency_ms", "type": "continuous", "direction": "minimize",
                 "max_relative_degradation": 0.2},
                {"name": "error", "type": "binary", "direction": "minimize",
                 "max_degradation": 0.02},
            ],
        }
        if i % 5 == 2:  # some targeting: about 3 units in 7 are excluded
            body["targeting"] = [{"attribute": "country", "op": "in",
                                  "values": ["DE", "FR", "US", "GB"]}]
        out.append(body)
    return out


def load_state(base: str, admin_key: str, count: int, *, skip: int = 0) -> list[str]:
    """Create and start `count` experiments through the admin API (after the first `skip`
    of the same series, already loaded); returns their keys."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    keys = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for body in experiment_bodies(count)[skip:]:
            r = client.post("/v1/experiments", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"create {body['key']}: {r.status_code} {r.text}")
            r = client.post(f"/v1/experiments/{body['key']}/start")
            if r.status_code != 200:
                raise RuntimeError(f"start {body['key']}: {r.status_code} {r.text}")
            keys.append(body["key"])
    return keys


def wait_decidable(base: str, key: str, experiments: list[str], *, timeout_s: float = 30) -> None:
    """Every worker knows the key and every experiment (checked a few passes over)."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout_s
    good_passes = 0
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        while good_passes < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("experiments or key did not reach every worker in time")
            ok = all(
                client.post("/v1/decide", json={"experiment": e, "unit_id": "probe"}).status_code
                == 200
                for e in experiments
            )
            good_passes = good_passes + 1 if ok else 0
            if not ok:
                time.sleep(0.3)


# --------------------------------------------------------------------------- databases


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _redis_cleanup(url: str, prefix: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    n = 0
    try:
        async for k in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(k)
            n += 1
    finally:
        await client.aclose()
    return n


async def _count_rows(dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return {
            "decisions": await conn.fetchval("SELECT count(*) FROM decisions"),
            "rewards": await conn.fetchval("SELECT count(*) FROM rewards"),
        }
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_services(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """CROUPIER_* environment for a fresh database + Redis prefix (or a temp data dir)."""
    token = secrets.token_hex(4)
    if args.embedded:
        data_dir = Path(tempfile.mkdtemp(prefix=f"croupier-bench-{token}-"))
        try:
            yield {"CROUPIER_DATA_DIR": str(data_dir)}
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    db = f"bench_{token}"
    admin_url = f"{args.pg_url.rstrip('/')}/postgres"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{db}"'))
    log(f"created database {db}; Redis prefix bench_{token}")
    try:
        yield {
            "CROUPIER_DATABASE_URL": f"{args.pg_url.rstrip('/')}/{db}",
            "CROUPIER_REDIS_URL": args.redis_url,
            "CROUPIER_REDIS_PREFIX": f"bench_{token}",
        }
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            log(f"dropped database {db}")
        with contextlib.suppress(Exception):
            asyncio.run(_redis_cleanup(args.redis_url, f"bench_{token}"))


# --------------------------------------------------------------------------- the run


def export_ref(ref: str, into: Path) -> tuple[str, Path]:
    """`src/` and `migrations/` of a git ref, exported so that concurrent edits of the
    checkout cannot change the code under test mid-run; returns (commit, src dir)."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "src", "migrations"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit, into / "src"


@dataclass
class Context:
    args: argparse.Namespace
    env: dict[str, str]
    pinning: Pinning
    logs: Path
    admin_key: str | None = None
    decide_key: str | None = None
    experiments: list[str] = field(default_factory=list)
    experiments_file: Path | None = None


def croupier_cmd(server: str, port: int, workers: int) -> list[str]:
    if server == "granian":
        return [str(BIN / "croupier"), "serve", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers)]
    return [str(BIN / "uvicorn"), "croupier.app:create_app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--no-access-log", "--backlog", "2048"]


def baseline_cmd(server: str, port: int, workers: int) -> list[str]:
    if server == "granian":
        return [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--backlog", "2048",
                "--no-access-log", "baseline_app:app"]
    return [str(BIN / "uvicorn"), "baseline_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--backlog", "2048"]


def scan_log(text: str) -> dict[str, Any]:
    hits = [ln for ln in text.splitlines() if LOG_PATTERNS.search(ln)]
    return {"suspicious_lines": len(hits), "first_lines": hits[:15]}


def start_baseline(ctx: Context, server: str) -> tuple[Server, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    srv = Server(f"baseline/{server}", baseline_cmd(server, port, ctx.args.workers),
                 env=env, cwd=HERE, log_path=ctx.logs / f"baseline-{server}.log",
                 pinning=ctx.pinning)
    srv.start()
    url = f"http://127.0.0.1:{port}"
    srv.wait_http(f"{url}/ping")
    return srv, url


def start_croupier(ctx: Context, server: str) -> tuple[Server, str]:
    a = ctx.args
    port = free_port()
    env = {**os.environ, **ctx.env, "CROUPIER_LOG_LEVEL": "INFO"}
    srv = Server(f"croupier/{server}", croupier_cmd(server, port, a.workers), env=env, cwd=REPO,
                 log_path=ctx.logs / f"croupier-{server}.log", pinning=ctx.pinning)
    url = f"http://127.0.0.1:{port}"
    srv.start()
    srv.wait_http(f"{url}/healthz", timeout_s=120)
    if ctx.admin_key is None:
        m = re.search(r"crp_[A-Za-z0-9_-]+", srv.log_text())
        if not m:
            raise RuntimeError("no bootstrap admin key in the server log")
        ctx.admin_key = m.group(0)
        ctx.experiments = load_state(url, ctx.admin_key, a.experiments)
        ctx.experiments_file = ctx.logs / "experiments.txt"
        ctx.experiments_file.write_text("\n".join(ctx.experiments) + "\n")
        done = subprocess.run(
            [str(BIN / "croupier"), "keys", "create", "--scope", "decide", "--name", "bench"],
            env=env, cwd=REPO, capture_output=True, text=True, check=True,
        )
        ctx.decide_key = done.stdout.strip().splitlines()[-1]
        log(f"loaded {len(ctx.experiments)} running experiments; created a decide key")
    assert ctx.decide_key is not None
    wait_decidable(url, ctx.decide_key, ctx.experiments)
    return srv, url


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (runs are kept whole so latencies stay consistent)."""
    ordered = sorted(runs, key=lambda r: r["req_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_req_per_s"] = [r["req_per_s"] for r in runs]
    chosen["rounds_other_cpu_cores_busy"] = [r.get("other_cpu_cores_busy") for r in runs]
    return chosen


def measure_server(ctx: Context, server: str, *, full: bool) -> dict[str, Any]:
    """Croupier and the baseline on one server kind, both up at once on the same cores;
    wrk alternates between them round by round so drift hits both alike."""
    a = ctx.args
    result: dict[str, Any] = {"croupier": {}, "baseline": {}}
    servers: list[Server] = []
    try:
        csrv, curl = start_croupier(ctx, server)
        servers.append(csrv)
        bsrv, burl = start_baseline(ctx, server)
        servers.append(bsrv)
        assert ctx.experiments_file is not None
        dargs = [f"key={ctx.decide_key}", f"experiments={ctx.experiments_file}"]
        common: dict[str, Any] = {"connections": a.connections, "pinning": ctx.pinning}
        run_wrk("decide.lua", curl, duration_s=3, args=dargs, label="decide warm-up", **common)
        run_wrk("ping.lua", burl, duration_s=2, label="ping warm-up", **common)
        pings, decides, echoes = [], [], []
        for r in range(a.rounds):
            pings.append(run_wrk("ping.lua", burl, duration_s=a.duration, monitor=bsrv.monitor,
                                 label=f"[{r + 1}/{a.rounds}] ping {server}", **common))
            decides.append(run_wrk("decide.lua", curl, duration_s=a.duration, args=dargs,
                                   monitor=csrv.monitor,
                                   label=f"[{r + 1}/{a.rounds}] decide {server} saturated",
                                   **common))
            if full:
                echoes.append(run_wrk("decide.lua", burl, duration_s=a.duration,
                                      monitor=bsrv.monitor, args=[*dargs, "path=/echo"],
                                      label=f"[{r + 1}/{a.rounds}] POST /echo {server}", **common))
        result["baseline"]["ping"] = median_run(pings)
        if echoes:
            result["baseline"]["echo"] = median_run(echoes)
        sat = result["croupier"]["decide"] = median_run(decides)
        if full:
            result["croupier"]["decide_half"] = half_load(
                "decide.lua", curl, peak_rps=sat["req_per_s"], duration_s=a.duration,
                monitor=csrv.monitor, args=dargs, label=f"decide {server} half load", **common)
            # the bare GET at the same offered rate: what the server stack alone does to the
            # latency at that rate, the reference for decide's half-load p99
            result["baseline"]["ping_half"] = half_load(
                "ping.lua", burl, peak_rps=sat["req_per_s"], duration_s=a.duration,
                monitor=bsrv.monitor, args=None, label=f"ping {server} at decide's half load",
                **common)
            result["croupier"].update(measure_rewards(ctx, curl, csrv.monitor, server))
            result["croupier"]["propagation"] = measure_propagation(ctx, curl)
            if a.memory_experiments > len(ctx.experiments):
                result["croupier"]["memory"] = measure_memory(ctx, curl, csrv, server)
        if a.profile and full:
            if shutil.which("py-spy") is None:
                log("--profile: py-spy is not on PATH; skipped")
            else:
                assert csrv.monitor is not None
                result["croupier"]["profile"] = profile(ctx, curl, csrv.monitor, dargs, server)
    finally:
        mems = [srv.stop() for srv in reversed(servers)]
    if len(mems) == 2:
        result["baseline"].update(mems[0])
        result["croupier"].update(mems[1])
    for srv, part in zip(servers, ("croupier", "baseline"), strict=False):
        result[part]["log"] = scan_log(srv.log_text())
    return result


def profile(
    ctx: Context, url: str, mon: TreeMonitor, dargs: list[str], server: str
) -> dict[str, Any]:
    """py-spy (--gil: only the thread running Python) on one worker during a saturated
    decide run and a single-reward run. The reward run reuses ids (duplicates)."""
    pid = mon.worker_pids()[-1]
    seconds = max(3, int(ctx.args.duration))
    out: dict[str, Any] = {"pid": pid, "seconds": seconds}
    ids_file = ctx.logs / "decision_ids.txt"
    runs = [("decide", "decide.lua", dargs)]
    if ids_file.exists():
        runs.append(("rewards_single", "rewards.lua",
                     [f"key={ctx.decide_key}", f"ids={ids_file}", "batch=1"]))
    for name, script, args in runs:
        raw = ctx.logs / f"profile-{name}-{server}.txt"
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
             "--gil", "--nonblocking", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        run_wrk(script, url, duration_s=seconds + 1, connections=ctx.args.connections,
                pinning=ctx.pinning, args=args, label=f"{name} (profiled)")
        spy.wait(timeout=60)
        out[name] = {"collapsed_stacks": str(raw), **summarise_profile(raw)}
    return out


def summarise_profile(collapsed: Path, n: int = 30) -> dict[str, Any]:
    """Inclusive share of samples per function, and per package, from py-spy raw output."""
    if not collapsed.exists():
        return {}
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if not num.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        count = int(num)
        total += count
        names = {re.sub(r":\d+\)$", ")", f) for f in frames}
        for f in names:
            inclusive[f] = inclusive.get(f, 0) + count
        if frames:
            lf = re.sub(r":\d+\)$", ")", frames[-1])
            leaf[lf] = leaf.get(lf, 0) + count

    def top(d: dict[str, int]) -> list[list[Any]]:
        return [[k, round(100 * v / total, 1)] for k, v in
                sorted(d.items(), key=lambda kv: -kv[1]) if "croupier/cli.py" not in k
                and "click/" not in k and "multiprocessing/" not in k
                and "granian/server/" not in k][:n]

    return {"samples": total, "inclusive_pct": top(inclusive), "self_pct": top(leaf)}


def measure_rewards(ctx: Context, url: str, mon: TreeMonitor | None, server: str) -> dict[str, Any]:
    a = ctx.args
    ids_file = ctx.logs / "decision_ids.txt"
    ids_file.unlink(missing_ok=True)
    assert ctx.decide_key is not None and ctx.experiments_file is not None
    harvest = run_wrk(
        "decide.lua", url, duration_s=a.harvest_s, connections=a.connections, pinning=ctx.pinning,
        args=[f"key={ctx.decide_key}", f"experiments={ctx.experiments_file}"],
        env={"WRK_HARVEST_FILE": str(ids_file)}, label="harvest decision ids",
    )
    ids = ids_file.read_text().split()
    distinct = len(set(ids))
    # 35 % of the ids for single rewards, the rest for batches (3 metrics per id): enough for
    # about 12,000 single rewards/s and 65,000 batched rewards/s with the default harvest
    # (3 × duration of saturated decide), so that the runs measure new rewards, not repeats
    single_n = len(ids) * 35 // 100
    out: dict[str, Any] = {"harvest": {"decision_ids": len(ids), "distinct": distinct,
                                       "seconds": harvest["seconds"]}}
    rargs = [f"key={ctx.decide_key}", f"ids={ids_file}"]
    dsn = ctx.env.get("CROUPIER_DATABASE_URL")
    before = asyncio.run(_count_rows(dsn)) if dsn else None
    single = with_groups(url, lambda: run_wrk(
        "rewards.lua", url, duration_s=a.duration, connections=a.connections,
        pinning=ctx.pinning, monitor=mon, label=f"rewards single {server}",
        args=[*rargs, "offset=0", f"count={single_n}", "batch=1", "metrics=reward"],
    ))
    single["items_per_s"] = round(
        (single["accepted"] + single["duplicates"]) / single["seconds"], 1
    )
    single["ids_available"] = single_n
    batch = with_groups(url, lambda: run_wrk(
        "rewards.lua", url, duration_s=a.duration, connections=a.connections,
        pinning=ctx.pinning, monitor=mon, label=f"rewards batch-100 {server}",
        args=[*rargs, f"offset={single_n}", f"count={len(ids) - single_n}", "batch=100",
              "metrics=reward,latency_ms,error"],
    ))
    batch["items_per_s"] = round((batch["accepted"] + batch["duplicates"]) / batch["seconds"], 1)
    batch["ids_available"] = len(ids) - single_n
    batch["items_available"] = 3 * (len(ids) - single_n)
    out["rewards_single"] = single
    out["rewards_batch100"] = batch
    if dsn:
        after = asyncio.run(_count_rows(dsn))
        out["db_rows"] = {"before_rewards": before, "after_rewards": after}
    return out


def group_commits(url: str) -> tuple[float, float] | None:
    """(group commits, items in them) from one worker's /metrics (exact with --workers 1; with
    more workers the scrape reaches one of them)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = dict(re.findall(r"^(croupier_reward_group_commit(?:s|_items))_total (\S+)$", text,
                            re.MULTILINE))
    if len(found) != 2:
        return None
    return float(found["croupier_reward_group_commits"]), float(
        found["croupier_reward_group_commit_items"])


def with_groups(url: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()` plus the mean reward group size and group commits per second during it."""
    before = group_commits(url)
    out = run()
    after = group_commits(url)
    if before is not None and after is not None and after[0] > before[0]:
        commits, items = after[0] - before[0], after[1] - before[1]
        out["group_commits_per_s"] = round(commits / out["seconds"], 1)
        out["items_per_group_commit"] = round(items / commits, 2)
    return out


def measure_propagation(ctx: Context, url: str, *, probes: int = 40) -> dict[str, Any]:
    """Allocation change → every process: stop one running experiment through the admin API
    and time until `probes` consecutive decisions (spread over the workers by the server's
    connection balancing) all answer `completed`."""
    assert ctx.admin_key is not None and ctx.decide_key is not None
    admin = {"Authorization": f"Bearer {ctx.admin_key}"}
    with httpx.Client(base_url=url, timeout=10) as admin_client, \
            httpx.Client(base_url=url, timeout=10,
                         headers={"Authorization": f"Bearer {ctx.decide_key}"},
                         limits=httpx.Limits(max_keepalive_connections=0)) as client:
        # one still running: after the reward runs the optimizer may have stopped some
        key = next(e for e in ctx.experiments if ".fixed." in e and admin_client.get(
            f"/v1/experiments/{e}", headers=admin).json()["status"] == "running")
        r = admin_client.post(f"/v1/experiments/{key}/stop", headers=admin)
        r.raise_for_status()
        committed = time.monotonic()
        deadline = committed + 10.0
        streak, n = 0, 0
        while streak < probes and time.monotonic() < deadline:
            n += 1
            d = client.post("/v1/decide", json={"experiment": key, "unit_id": f"p{n}"})
            streak = streak + 1 if d.json().get("reason") == "completed" else 0
        last_stale = time.monotonic()
    return {"experiment": key, "probes": probes, "requests": n, "ok": streak >= probes,
            "visible_everywhere_s": round(last_stale - committed, 4)}


def measure_memory(ctx: Context, url: str, srv: Server, server: str) -> dict[str, Any]:
    """Worker memory with `--memory-experiments` (1,000) experiments loaded: the peak so far
    (the benchmark's 100), then load the rest through the admin API, decide over all of them
    for a while (every worker builds its snapshot, sticky cache and decision buffer), read
    some results (the statistics code is loaded), and take the peak again."""
    a = ctx.args
    assert srv.monitor is not None and ctx.admin_key is not None and ctx.decide_key is not None
    before = srv.monitor.report()
    t0 = time.monotonic()
    added = load_state(url, ctx.admin_key, a.memory_experiments, skip=len(ctx.experiments))
    everything = [*ctx.experiments, *added]
    wait_decidable(url, ctx.decide_key, everything, timeout_s=120)
    load_s = time.monotonic() - t0
    log(f"loaded {len(added)} more experiments ({len(everything)} running) in {load_s:.1f} s")
    all_file = ctx.logs / "experiments-memory.txt"
    all_file.write_text("\n".join(everything) + "\n")
    run_wrk("decide.lua", url, duration_s=a.duration, connections=a.connections,
            pinning=ctx.pinning, args=[f"key={ctx.decide_key}", f"experiments={all_file}"],
            monitor=srv.monitor, label=f"decide {server} over {len(everything)} experiments")
    admin = {"Authorization": f"Bearer {ctx.admin_key}"}
    with httpx.Client(base_url=url, headers=admin, timeout=30) as client:
        for key in everything[:: max(1, len(everything) // 20)]:
            client.get(f"/v1/experiments/{key}/results").raise_for_status()
    time.sleep(1.0)  # a few more RSS samples
    after = srv.monitor.report()
    return {
        "experiments": len(everything),
        "load_s": round(load_s, 1),
        "peak_rss_mib_worker_max_before": before["peak_rss_mib_worker_max"],
        "peak_rss_mib_worker_max": after["peak_rss_mib_worker_max"],
        "peak_rss_mib_per_worker": after["peak_rss_mib_per_worker"],
        "peak_rss_mib_optimizer": after["peak_rss_mib_optimizer"],
    }


def run_optimizer_cycle(args: argparse.Namespace, code_env: dict[str, str],
                        logs: Path) -> dict[str, Any]:
    """benchmarks/optimizer_cycle.py in a subprocess (the same code under test)."""
    out = logs / "optimizer.json"
    cmd = [sys.executable, str(HERE / "optimizer_cycle.py"), "--experiments",
           str(args.optimizer_experiments), "--pg-url", args.pg_url, "--redis-url",
           args.redis_url, "--out", str(out)]
    log(f"optimizer cycle over {args.optimizer_experiments} experiments")
    subprocess.run(cmd, env={**os.environ, **code_env}, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=(logs / "optimizer.log").open("w"))
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("granian", "uvicorn", "litestar", "msgspec", "asyncpg", "croupier"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[pkg] = version(pkg)
    loops: dict[str, bool] = {}
    for mod in ("uvloop", "httptools"):
        try:
            __import__(mod)
            loops[mod] = True
        except ImportError:
            loops[mod] = False
    wrk_v = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(), "versions": versions, "optional_speedups": loops,
        "wrk": wrk_v.splitlines()[0] if wrk_v else "", "git_commit": commit,
        "src_dirty": dirty,
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, each next to its baseline."""
    out: dict[str, Any] = {}
    for server, r in res["servers"].items():
        base = r["baseline"]["ping"]["req_per_s"]
        dec = r["croupier"]["decide"]
        s: dict[str, Any] = {
            "baseline_req_per_s": base,
            "decide_req_per_s": dec["req_per_s"],
            "decide_to_baseline": ratio(dec["req_per_s"], base),
            # each round's decide run right after its ping run: robust to slow drifts in load
            "decide_to_baseline_per_round": [
                ratio(d, b) for d, b in zip(dec["rounds_req_per_s"],
                                            r["baseline"]["ping"]["rounds_req_per_s"], strict=True)
            ],
            "decide_p50_ms_saturated": dec["p50_ms"],
            "decide_p99_ms_saturated": dec["p99_ms"],
            "peak_rss_mib_per_worker": r["croupier"]["peak_rss_mib_worker_max"],
            "peak_rss_mib_optimizer": r["croupier"].get("peak_rss_mib_optimizer"),
            "baseline_peak_rss_mib_per_worker": r["baseline"]["peak_rss_mib_worker_max"],
            "decide_non_2xx": dec["non_2xx"],
            "decide_rounds_req_per_s": dec["rounds_req_per_s"],
            "baseline_rounds_req_per_s": r["baseline"]["ping"]["rounds_req_per_s"],
            "other_cpu_cores_busy_max": max(
                [x for x in (*dec["rounds_other_cpu_cores_busy"],
                             *r["baseline"]["ping"]["rounds_other_cpu_cores_busy"])
                 if x is not None], default=None),
        }
        if "echo" in r["baseline"]:
            echo = r["baseline"]["echo"]["req_per_s"]
            s |= {"echo_req_per_s": echo, "echo_to_baseline": ratio(echo, base),
                  "decide_to_echo": ratio(dec["req_per_s"], echo)}
        if "decide_half" in r["croupier"]:
            h = r["croupier"]["decide_half"]
            s |= {"decide_half_req_per_s": h["req_per_s"],
                  "decide_half_fraction_of_peak": h["fraction_of_peak"],
                  "decide_p50_ms_half": h["p50_ms"], "decide_p99_ms_half": h["p99_ms"]}
            ph = r["baseline"].get("ping_half")
            if ph is not None:
                s |= {"baseline_half_req_per_s": ph["req_per_s"],
                      "baseline_p50_ms_half": ph["p50_ms"], "baseline_p99_ms_half": ph["p99_ms"]}
        if "rewards_single" in r["croupier"]:
            rs, rb = r["croupier"]["rewards_single"], r["croupier"]["rewards_batch100"]
            s |= {
                "rewards_single_req_per_s": rs["req_per_s"],
                "rewards_single_items_per_s": rs["items_per_s"],
                "rewards_single_to_decide": ratio(rs["req_per_s"], dec["req_per_s"]),
                "rewards_single_to_baseline": ratio(rs["req_per_s"], base),
                "rewards_single_p99_ms": rs["p99_ms"],
                "rewards_single_duplicates": rs["duplicates"],
                "rewards_batch100_req_per_s": rb["req_per_s"],
                "rewards_batch100_items_per_s": rb["items_per_s"],
                "rewards_batch100_items_to_decide": ratio(rb["items_per_s"], dec["req_per_s"]),
                "rewards_batch100_p99_ms": rb["p99_ms"],
                "rewards_batch100_duplicates": rb["duplicates"],
                "rewards_non_2xx": rs["non_2xx"] + rb["non_2xx"],
                "rewards_single_items_per_group_commit": rs.get("items_per_group_commit"),
                "rewards_single_group_commits_per_s": rs.get("group_commits_per_s"),
                "rewards_batch100_items_per_group_commit": rb.get("items_per_group_commit"),
            }
        if "propagation" in r["croupier"]:
            s["propagation_s"] = r["croupier"]["propagation"]["visible_everywhere_s"]
        if "memory" in r["croupier"]:
            m = r["croupier"]["memory"]
            s["peak_rss_mib_per_worker"] = m["peak_rss_mib_worker_max_before"]
            s["peak_rss_mib_per_worker_loaded"] = m["peak_rss_mib_worker_max"]
            s["peak_rss_mib_optimizer_loaded"] = m["peak_rss_mib_optimizer"]
            s["memory_experiments"] = m["experiments"]
        out[server] = s
    if "optimizer" in res:
        phases = res["optimizer"]["phases"]
        out["optimizer"] = {
            "experiments": res["optimizer"]["experiments"],
            "cold_s": phases["cold"]["cycles_s"][0],
            **{f"{name}_median_s": ph["median_s"] for name, ph in phases.items()
               if "median_s" in ph},
        }
    return out


def print_table(res: dict[str, Any]) -> None:
    summ = res["summary"]
    w = res["config"]["workers"]
    rows: list[tuple[str, ...]] = []
    for server, s in summ.items():
        if server == "optimizer":
            continue
        rows.append((f"[{server}, {w} worker(s)]", "", ""))
        rows.append(("baseline GET /ping", f"{s['baseline_req_per_s']:.0f} req/s", "1.00"))
        rows.append((f"decide, saturated ({res['config']['connections']} conn)",
                     f"{s['decide_req_per_s']:.0f} req/s",
                     f"{s['decide_to_baseline']:.2f} of baseline"))
        if "echo_req_per_s" in s:
            rows.append(("  (bare POST /echo, same body)", f"{s['echo_req_per_s']:.0f} req/s",
                         f"{s['echo_to_baseline']:.2f} of baseline; decide = "
                         f"{s['decide_to_echo']:.2f} of echo"))
        rows.append(("  decide p50 / p99 saturated",
                     f"{s['decide_p50_ms_saturated']:.2f} / "
                     f"{s['decide_p99_ms_saturated']:.2f} ms", ""))
        if "decide_half_req_per_s" in s:
            rows.append(("  decide p50 / p99 at ~half load",
                         f"{s['decide_p50_ms_half']:.2f} / {s['decide_p99_ms_half']:.2f} ms",
                         f"at {s['decide_half_req_per_s']:.0f} req/s "
                         f"({s['decide_half_fraction_of_peak']:.2f} of peak)"))
        if "baseline_p99_ms_half" in s:
            rows.append(("  bare GET p50 / p99, same rate",
                         f"{s['baseline_p50_ms_half']:.2f} / {s['baseline_p99_ms_half']:.2f} ms",
                         f"at {s['baseline_half_req_per_s']:.0f} req/s"))
        if "rewards_single_req_per_s" in s:
            rows.append(("rewards, single", f"{s['rewards_single_items_per_s']:.0f} rewards/s",
                         f"{s['rewards_single_to_decide']:.2f} of decide req/s"))
            rows.append(("rewards, batch of 100",
                         f"{s['rewards_batch100_items_per_s']:.0f} rewards/s",
                         f"{s['rewards_batch100_req_per_s']:.0f} req/s; "
                         f"{s['rewards_batch100_items_to_decide']:.1f}x decide req/s"))
            rows.append(("  rewards p99 single / batch",
                         f"{s['rewards_single_p99_ms']:.1f} / "
                         f"{s['rewards_batch100_p99_ms']:.1f} ms",
                         f"duplicates {s['rewards_single_duplicates']} / "
                         f"{s['rewards_batch100_duplicates']}"))
            if s.get("rewards_single_items_per_group_commit"):
                rows.append(("  items per group commit",
                             f"{s['rewards_single_items_per_group_commit']:.1f} / "
                             f"{s['rewards_batch100_items_per_group_commit'] or 0:.0f}",
                             f"single: {s['rewards_single_group_commits_per_s']:.0f} "
                             "commits/s"))
        rows.append(("peak RSS per worker", f"{s['peak_rss_mib_per_worker']:.0f} MiB",
                     f"baseline {s['baseline_peak_rss_mib_per_worker']:.0f} MiB"
                     + (f"; optimizer process {s['peak_rss_mib_optimizer']:.0f} MiB"
                        if s.get("peak_rss_mib_optimizer") else "")))
        if "peak_rss_mib_per_worker_loaded" in s:
            rows.append((f"  with {s['memory_experiments']} experiments",
                         f"{s['peak_rss_mib_per_worker_loaded']:.0f} MiB",
                         f"= {s['peak_rss_mib_per_worker_loaded'] * 2**20 / 1e6:.0f} MB; "
                         f"optimizer process {s['peak_rss_mib_optimizer_loaded']:.0f} MiB"))
        if "propagation_s" in s:
            rows.append(("allocation change visible", f"{s['propagation_s'] * 1000:.0f} ms",
                         "stop → 40 consecutive decides answer completed"))
        rows.append(("decide/baseline per round",
                     " ".join(f"{x:.2f}" for x in s["decide_to_baseline_per_round"]), ""))
        rows.append(("rounds req/s ping | decide",
                     " ".join(f"{x:.0f}" for x in s["baseline_rounds_req_per_s"]) + " | "
                     + " ".join(f"{x:.0f}" for x in s["decide_rounds_req_per_s"]),
                     f"other load up to {s['other_cpu_cores_busy_max']} cores"))
    if "optimizer" in summ:
        o = summ["optimizer"]
        rows.append((f"[optimizer, {o['experiments']} running experiments]", "", ""))
        rows.append(("cycle, first (all new)", f"{o['cold_s']:.2f} s", ""))
        for name in ("unchanged", "changed_10pct", "changed_100pct", "unchanged_after"):
            if f"{name}_median_s" in o:
                rows.append((f"cycle, {name.replace('_', ' ')}", f"{o[f'{name}_median_s']:.2f} s",
                             "median of 3"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    print(f"\npinning: {res['config']['pinning']}")
    errs = {k: v["croupier"]["log"]["suspicious_lines"] for k, v in res["servers"].items()}
    print(f"server log lines matching error patterns: {errs}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--server", choices=["granian", "uvicorn"], default="granian",
                   help="server for the full suite; the other one is measured on decide only")
    p.add_argument("--no-compare", action="store_true", help="skip the other server")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    p.add_argument("--embedded", action="store_true",
                   help="no URLs: embedded PostgreSQL/Redis in a temp --data-dir")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating ping/decide rounds; the median round is reported")
    p.add_argument("--experiments", type=int, default=100)
    p.add_argument("--harvest-s", type=float, default=None,
                   help="seconds of /v1/decide to collect decision ids for rewards "
                        "(default 3×duration)")
    p.add_argument("--optimizer-experiments", type=int, default=1000,
                   help="experiments for the optimizer-cycle benchmark (optimizer_cycle.py; "
                        "0 skips it)")
    p.add_argument("--memory-experiments", type=int, default=1000,
                   help="after the other runs, load experiments up to this many and take the "
                        "workers' peak memory again (0 skips it)")
    p.add_argument("--quiet-wait-s", type=float, default=60.0,
                   help="before each measured run, wait up to this long for the machine to be "
                        "under --quiet-pct busy (0 = do not wait)")
    p.add_argument("--quiet-pct", type=float, default=20.0)
    p.add_argument("--profile", action="store_true",
                   help="py-spy (on PATH) a worker during decide and single-reward runs")
    p.add_argument("--ref", default="HEAD",
                   help="git ref whose src/ is benchmarked (exported to a temp dir and put first "
                        "on PYTHONPATH); 'worktree' runs the checkout as it is")
    a = p.parse_args(argv)
    if a.harvest_s is None:
        a.harvest_s = 3 * a.duration
    if shutil.which("wrk") is None:
        print("wrk is not installed; install it with:\n\n    apt-get install -y wrk\n",
              file=sys.stderr)
        return 2
    if shutil.which("taskset") is None:
        print("taskset is missing (package util-linux)", file=sys.stderr)
        return 2
    if a.embedded and not a.no_compare:
        log("--embedded: uvicorn needs URLs, so the uvicorn comparison is skipped")
        a.no_compare = True
    QUIET.update(max_wait_s=a.quiet_wait_s, threshold_pct=a.quiet_pct)
    pinning = Pinning.plan(a.workers)
    log(pinning.note)
    idle = psutil.cpu_percent(interval=2.0, percpu=True)
    log(f"machine load before the run: {idle} % per core, loadavg {os.getloadavg()}")
    if max(idle) > 15:
        log("WARNING: the machine is busy; ratios hold up better than absolute numbers, "
            "but expect noise (see other_cpu_cores_busy per run in the JSON)")
    logs = Path(tempfile.mkdtemp(prefix="croupier-bench-logs-"))
    servers = [a.server] + ([] if a.no_compare else
                            [s for s in ("granian", "uvicorn") if s != a.server])
    res: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {"workers": a.workers, "duration_s": a.duration, "connections": a.connections,
                   "wrk_threads": WRK_THREADS, "experiments": a.experiments,
                   "rounds": a.rounds,
                   "harvest_s": a.harvest_s, "primary_server": a.server,
                   "embedded": a.embedded, "pinning": pinning.note,
                   "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])])},
        "servers": {},
        "machine_busy_before_pct": idle,
    }
    if a.ref == "worktree":
        res["config"]["code"] = {"ref": "worktree", "commit": res["machine"]["git_commit"],
                                 "src_dirty": res["machine"]["src_dirty"]}
        code_env: dict[str, str] = {}
    else:
        commit, src = export_ref(a.ref, logs)
        res["config"]["code"] = {"ref": a.ref, "commit": commit}
        code_env = {"PYTHONPATH": str(src)}
        log(f"benchmarking {a.ref} = {commit[:10]} (exported to {src})")
    with fresh_services(a) as env:
        ctx = Context(args=a, env={**env, **code_env}, pinning=pinning, logs=logs)
        for i, server in enumerate(servers):
            full = i == 0
            res["servers"][server] = measure_server(ctx, server, full=full)
    if a.optimizer_experiments > 0 and not a.embedded:
        res["optimizer"] = run_optimizer_cycle(a, code_env, logs)
    res["summary"] = summarise(res)
    res["logs_dir"] = str(logs)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"\nJSON: {out}\nserver logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
