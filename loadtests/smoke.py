"""The CI smoke load test: start `croupier serve`, run the Locust mix headless for ~20 s,
fail on any failed request or 5xx, then stop the server and check its log.

    python loadtests/smoke.py [--duration-s 20] [--users 20] [--database-url URL --redis-url URL]

Without URLs the server runs on the embedded PostgreSQL and Redis in a temporary data dir
(what a fresh checkout gets). Exit status 0 only if Locust passed (see loadtests/README.md),
the server stopped cleanly on SIGTERM and its log holds no traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=int, default=20)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--database-url", default=None)
    p.add_argument("--redis-url", default=None)
    a = p.parse_args(argv)
    if shutil.which("locust", path=str(BIN)) is None and shutil.which("locust") is None:
        print("locust is not installed: pip install locust", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="croupier-loadtest-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_")}
    env["CROUPIER_DATA_DIR"] = str(tmp / "data")
    if a.database_url and a.redis_url:
        # a fresh database on the given server, dropped at the end
        env["CROUPIER_REDIS_URL"] = a.redis_url
        env["CROUPIER_REDIS_PREFIX"] = f"loadtest_{os.getpid()}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    db_name = f"loadtest_{os.getpid()}"
    if a.database_url:
        import asyncio

        import asyncpg

        async def admin(sql: str) -> None:
            conn = await asyncpg.connect(a.database_url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
        base = a.database_url.rsplit("/", 1)[0]
        env["CROUPIER_DATABASE_URL"] = f"{base}/{db_name}"
    server = subprocess.Popen(
        [str(BIN / "croupier"), "serve", "--port", str(port), "--workers", str(a.workers)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env,
    )
    code = 1
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError("croupier serve exited:\n" + log.read_text())
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("croupier serve did not become ready:\n" + log.read_text())
            time.sleep(0.3)
        match = re.search(r"crp_[A-Za-z0-9_-]+", log.read_text())
        if match is None:
            raise RuntimeError("no bootstrap admin key in the server log")
        admin_key = match.group(0)
        created = subprocess.run(
            [str(BIN / "croupier"), "keys", "create", "--scope", "decide", "--name", "loadtest"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )
        decide_key = created.stdout.strip().splitlines()[-1]
        locust = subprocess.run(
            [
                str(BIN / "locust"), "-f", str(HERE / "locustfile.py"), "--headless",
                "--host", url, "-u", str(a.users), "-r", str(max(1, a.users // 2)),
                "-t", f"{a.duration_s}s", "--only-summary", "--stop-timeout", "5",
            ],
            env={**os.environ, "CROUPIER_ADMIN_KEY": admin_key,
                 "CROUPIER_DECIDE_KEY": decide_key},
            timeout=a.duration_s + 120,
        )
        code = locust.returncode
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            print("croupier serve did not stop within 60 s of SIGTERM", file=sys.stderr)
            code = 1
        text = log.read_text()
        if server.returncode != 0:
            print(f"croupier serve exited with {server.returncode}", file=sys.stderr)
            code = 1
        if "Traceback" in text or re.search(r" ERROR ", text):
            print("server log has errors:\n" + text[-4000:], file=sys.stderr)
            code = 1
        if a.database_url:
            import asyncio

            import asyncpg

            async def drop() -> None:
                conn = await asyncpg.connect(a.database_url)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                finally:
                    await conn.close()

            asyncio.run(drop())
        shutil.rmtree(tmp, ignore_errors=True)
    print("loadtest smoke: " + ("PASS" if code == 0 else "FAIL"))
    return code


if __name__ == "__main__":
    sys.exit(main())
