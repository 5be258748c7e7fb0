"""Webhook alerts (`alerts_url`): POST a JSON body on stop, rollback, stage change and SRM.

Sending never blocks the optimizer: `send` only puts the alert on a bounded queue, and one
named background task delivers it with a timeout per attempt and a few retries with backoff.
A full queue drops the alert (counted and logged); shutdown drains for a bounded time.
The HTTP call itself is the standard library's `urllib` run in a worker thread, so the
server has no extra runtime dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

logger = logging.getLogger("croupier.optimizer.alerts")

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Alert:
    """One webhook delivery: where, and the JSON body."""

    url: str
    body: dict[str, Any]


def alert_body(
    *, event: str, experiment: str, reason: str, at: datetime | None = None, **details: Any
) -> dict[str, Any]:
    """The JSON body of every alert: `event`, `experiment`, `reason`, `at` plus details."""
    return {
        "event": event,
        "experiment": experiment,
        "reason": reason,
        "at": (at or datetime.now(UTC)).isoformat(),
        **details,
    }


def post_json(url: str, body: bytes, timeout_s: float) -> int:
    """POST `body` as JSON (blocking); returns the HTTP status, raises on network errors."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"alerts_url must be http(s), got {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked just above
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "croupier-optimizer"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class AlertSender:
    """A bounded queue of alerts and the task that delivers them."""

    timeout_s: float = 2.0
    attempts: int = 3
    backoff_s: float = 0.5
    max_queued: int = 1000
    drain_s: float = 3.0
    post: Callable[[str, bytes, float], int] = post_json
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    _queue: asyncio.Queue[Alert] | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the delivery task."""
        self._queue = asyncio.Queue(maxsize=self.max_queued)
        self._task = asyncio.create_task(self._run(), name="croupier-optimizer-alerts")

    def send(self, url: str | None, body: dict[str, Any]) -> None:
        """Queue one alert (no-op without a URL); never waits."""
        if url is None or self._queue is None:
            return
        try:
            self._queue.put_nowait(Alert(url, body))
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning(
                "alert queue full; dropped %s alert for %s",
                body.get("event"),
                body.get("experiment"),
            )

    async def stop(self) -> None:
        """Deliver what is queued for at most `drain_s`, then stop."""
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_s):
                await self._queue.join()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            alert = await self._queue.get()
            try:
                await self._deliver(alert)
            finally:
                self._queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        payload = _encoder.encode(alert.body)
        last = ""
        for attempt in range(self.attempts):
            try:
                status = await asyncio.to_thread(self.post, alert.url, payload, self.timeout_s)
                if 200 <= status < 300:
                    self.sent += 1
                    return
                last = f"HTTP {status}"
                if 400 <= status < 500 and status not in (408, 429):
                    break  # the receiver refuses this alert; retrying will not help
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        logger.warning(
            "alert %s for %s to %s failed: %s",
            alert.body.get("event"),
            alert.body.get("experiment"),
            alert.url,
            last,
        )
