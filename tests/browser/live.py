"""What the browser tests share: a live server (`create_app(settings)` served by uvicorn on a
free port of 127.0.0.1, in a thread) and how Chromium is found and launched."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import uvicorn

from croupier.app import create_app
from croupier.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
"""Debian's chromium. Playwright drives it through `executable_path`: `playwright install`
(which downloads a browser build of its own) is never needed."""

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars"]
"""Headless, no sandbox (containers run as root), no network of the browser's own."""


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real HTTP server for a browser to talk to."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, lifespan="on",
            log_level="warning", ws="none", http="h11",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)

    def start(self) -> None:
        """Start serving; returns once the app's lifespan has started."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving (graceful, bounded)."""
        self._server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive()
