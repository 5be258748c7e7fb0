"""Picture of the dashboard: `python -m tests.browser.screenshot --out docs/dashboard.png`
(`make screenshot`).

Starts `croupier serve` on the embedded PostgreSQL and Redis in a temporary data directory
(the optimizer every 0.5 s), posts the demo traffic of :mod:`tests.browser.demo` over about
ten seconds, opens the dashboard in headless Chromium (Debian's `chromium`, through
Playwright), signs in with the admin key the server printed, and saves a PNG of an
experiment's page. Fails if the page logs a console error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browser.demo import PROMPTS, seed
from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, free_port


def _start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`croupier serve` on a free port; returns the process, its URL and the admin key."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROUPIER_")}
    env["CROUPIER_OPTIMIZER_INTERVAL_S"] = "0.5"
    env["CROUPIER_LOG_LEVEL"] = "WARNING"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "croupier.cli", "serve", "--data-dir", str(data_dir),
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("croupier serve exited:\n" + log.read_text())
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        raise SystemExit("croupier serve did not become ready:\n" + log.read_text())
    match = re.search(r"crp_[A-Za-z0-9_-]+", log.read_text())
    if match is None:
        proc.kill()
        raise SystemExit("no admin key in the server's output:\n" + log.read_text())
    return proc, url, match.group(0)


async def _capture(
    url: str, admin_key: str, out: Path, *, width: int, height: int, page_name: str
) -> None:
    from playwright.async_api import async_playwright

    if CHROMIUM is None:
        raise SystemExit("no chromium executable: apt-get install chromium")
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(url + "/ui")
            await page.fill("#admin-key", admin_key)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector("#experiments")
            if page_name == "experiment":
                await page.goto(f"{url}/ui#/e/{PROMPTS}")
                await page.wait_for_selector("#chart-pbest rect.bar")
            await page.wait_for_timeout(300)
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out))
        finally:
            await browser.close()
    if problems:
        raise SystemExit("the page logged errors:\n" + "\n".join(problems))


def main(argv: list[str] | None = None) -> int:
    """Start a demo server, capture the dashboard, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=10, help="rounds of demo traffic, 1 s apart")
    parser.add_argument("--page", choices=["experiment", "list"], default="experiment",
                        help=f"the page of the {PROMPTS} experiment, or the experiment list")
    args: Any = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="croupier-screenshot-") as tmp:
        proc, url, admin_key = _start_server(Path(tmp) / "data", Path(tmp) / "serve.log")
        try:
            asyncio.run(seed(url, admin_key, rounds=args.rounds, per_round=120, pause_s=1.0))
            asyncio.run(_capture(url, admin_key, args.out, width=args.width, height=args.height,
                                 page_name=args.page))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
