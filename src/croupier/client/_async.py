"""The asyncio client: `await decide()` bounded by one deadline, rewards sent by a background
task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from types import TracebackType
from typing import Any

import httpx

from croupier.client._core import (
    DECIDE_PATH,
    REWARDS_PATH,
    Counters,
    Decision,
    Reward,
    RewardStats,
    auth_headers,
    backoff_s,
    check_batch_size,
    decision_decoder,
    encode_decide,
    encode_json,
    encode_rewards,
    error_of,
    fallback,
    judge,
    valid_reward,
)

logger = logging.getLogger("croupier.client")


class AsyncCroupier:
    """A Croupier client for asyncio code (use it from one event loop).

    `await decide()` never raises: it is bounded by `decide_timeout_s` in total and returns the
    caller's default arm as a `Decision` with reason `"fallback"` on any failure. `reward()` is
    a plain (non-async) call that only queues; a background task sends batches of up to
    `batch_size`, retrying connection errors, timeouts and 5xx with exponential backoff.
    Retrying is safe: the server keeps one value per (decision_id, metric).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        decide_timeout_s: float = 0.2,
        timeout_s: float = 10.0,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        max_queue: int = 100_000,
        max_attempts: int = 10,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        common: dict[str, Any] = {
            "base_url": base_url,
            "headers": auth_headers(api_key, headers),
            "transport": transport,
        }
        self._decide_timeout_s = decide_timeout_s
        self._decide_http = httpx.AsyncClient(timeout=httpx.Timeout(decide_timeout_s), **common)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), **common)
        self._batch_size = check_batch_size(batch_size)
        self._flush_interval_s = flush_interval_s
        self._max_queue = max_queue
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._queue: deque[Reward] = deque()
        self._counters = Counters()
        self._flush_waiters = 0
        self._closing = False
        self._give_up_at: float | None = None
        self._wake = asyncio.Event()  # the sender has something to do
        self._progress = asyncio.Event()  # rewards were finished (flush waits on it)
        self._closed = asyncio.Event()  # interrupts a backoff sleep
        self._task: asyncio.Task[None] | None = None
        self._decide_failing = False

    # -- decisions -------------------------------------------------------------------------

    async def decide(
        self,
        experiment: str,
        unit_id: str,
        context: dict[str, Any] | None = None,
        *,
        default_arm: str,
        default_config: dict[str, Any] | None = None,
    ) -> Decision:
        """Ask which arm `unit_id` gets; the default arm on any failure (never raises)."""
        try:
            async with asyncio.timeout(self._decide_timeout_s):
                response = await self._decide_http.post(
                    DECIDE_PATH, content=encode_decide(experiment, unit_id, context)
                )
            if response.status_code != 200:
                error = str(error_of(response.status_code, response.content))
            else:
                decision = decision_decoder.decode(response.content)
                if self._decide_failing:
                    logger.info("decisions from %s resumed", self._decide_http.base_url)
                    self._decide_failing = False
                return decision
        except TimeoutError:
            error = f"no answer within {self._decide_timeout_s} s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not self._decide_failing:
            logger.warning("decide failed (%s); serving default arms until it recovers", error)
            self._decide_failing = True
        else:
            logger.debug("decide failed: %s", error)
        return fallback(experiment, default_arm, default_config, error)

    # -- rewards ---------------------------------------------------------------------------

    def reward(
        self,
        decision_id: str | None,
        value: float,
        metric: str = "reward",
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        """Queue a reward for background delivery (not a coroutine); False if it was not
        queued (never raises). Rewards of a fallback decision are ignored."""
        problem = valid_reward(decision_id, value)
        if problem is not None or self._closing or len(self._queue) >= self._max_queue:
            self._counters.dropped += 1
            if problem is None:
                logger.warning(
                    "reward dropped: %s", "client closed" if self._closing else "queue full"
                )
            return False
        assert decision_id is not None
        self._queue.append(Reward(decision_id, float(value), metric, idempotency_key))
        self._counters.queued += 1
        self._ensure_task()
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return True

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: the next call inside one starts the sender
                return
            self._task = loop.create_task(self._run(), name="croupier-client-rewards")

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Send everything queued so far now; True once all of it was acknowledged or given
        up, False if `timeout_s` passed first."""
        target = self._counters.queued
        if self._counters.finished >= target:
            return True
        self._ensure_task()
        self._flush_waiters += 1
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                while self._counters.finished < target:
                    self._progress.clear()
                    await self._progress.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._flush_waiters -= 1

    def reward_stats(self) -> RewardStats:
        """What the reward sender has done so far."""
        return self._counters.snapshot()

    async def _next_batch(self) -> list[Reward] | None:
        """Wait for a full batch, a flush, the interval or close; None when closed and empty."""
        due: float | None = None
        while True:
            if self._queue:
                now = time.monotonic()
                if due is None:
                    due = now + self._flush_interval_s
                urgent = self._flush_waiters > 0 or self._closing
                if len(self._queue) >= self._batch_size or urgent or now >= due:
                    n = min(self._batch_size, len(self._queue))
                    return [self._queue.popleft() for _ in range(n)]
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - now):
                        await self._wake.wait()
            elif self._closing:
                return None
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _run(self) -> None:
        while (batch := await self._next_batch()) is not None:
            try:
                await self._deliver(batch)
            except Exception:  # never let the sender task die
                logger.exception("reward batch of %s dropped after an unexpected error", len(batch))
                self._finish(len(batch), dropped=len(batch))

    async def _deliver(self, batch: list[Reward]) -> None:
        """Send one batch until acknowledged, rejected or given up."""
        attempt = 0
        while batch:
            attempt += 1
            retry_after: float | None = None
            detail = ""
            try:
                response = await self._http.post(REWARDS_PATH, content=encode_rewards(batch))
                verdict = judge(
                    response.status_code,
                    response.content,
                    response.headers.get("retry-after"),
                    len(batch),
                )
            except httpx.HTTPError as exc:
                verdict = None
                detail = f"{type(exc).__name__}: {exc}"
            if verdict is not None and verdict.kind == "done":
                self._finish(len(batch), accepted=verdict.accepted, duplicates=verdict.duplicates)
                return
            if verdict is not None and verdict.kind == "drop_item":
                assert verdict.index is not None
                logger.warning("reward refused and dropped: %s", verdict.detail)
                self._finish(1, rejected=1)
                batch = batch[: verdict.index] + batch[verdict.index + 1 :]
                attempt = 0
                continue
            if verdict is not None and verdict.kind == "drop_batch":
                logger.error("reward batch of %s refused: %s", len(batch), verdict.detail)
                self._finish(len(batch), rejected=len(batch))
                return
            if verdict is not None:
                detail, retry_after = verdict.detail, verdict.retry_after_s
            delay = backoff_s(
                attempt,
                base_s=self._backoff_base_s,
                max_s=self._backoff_max_s,
                retry_after_s=retry_after,
            )
            give_up_at = self._give_up_at
            out_of_time = give_up_at is not None and time.monotonic() + delay > give_up_at
            if attempt >= self._max_attempts or out_of_time:
                logger.error(
                    "reward batch of %s dropped after %s attempts: %s", len(batch), attempt, detail
                )
                self._finish(len(batch), dropped=len(batch))
                return
            logger.debug("reward batch failed (%s); retrying in %.2f s", detail, delay)
            self._counters.retries += 1
            if give_up_at is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._closed.wait()  # close() cuts the sleep short
            else:
                await asyncio.sleep(delay)

    def _finish(
        self, n: int, *, accepted: int = 0, duplicates: int = 0, rejected: int = 0, dropped: int = 0
    ) -> None:
        c = self._counters
        c.finished += n
        c.accepted += accepted
        c.duplicates += duplicates
        c.rejected += rejected
        c.dropped += dropped
        if accepted or duplicates:
            c.batches += 1
        self._progress.set()

    # -- admin helpers ---------------------------------------------------------------------

    async def _admin(self, method: str, path: str, body: Any = None) -> Any:
        content = encode_json(body) if body is not None else None
        response = await self._http.request(method, path, content=content)
        if response.status_code >= 400:
            raise error_of(response.status_code, response.content)
        return response.json() if response.content else None

    async def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/experiments` (admin key); raises `CroupierError` on failure."""
        result: dict[str, Any] = await self._admin("POST", "/v1/experiments", body)
        return result

    async def get_experiment(self, key: str) -> dict[str, Any]:
        """`GET /v1/experiments/{key}`."""
        result: dict[str, Any] = await self._admin("GET", f"/v1/experiments/{key}")
        return result

    async def start_experiment(self, key: str) -> dict[str, Any]:
        """`POST /v1/experiments/{key}/start`."""
        result: dict[str, Any] = await self._admin("POST", f"/v1/experiments/{key}/start")
        return result

    async def stop_experiment(self, key: str, *, winner: str | None = None) -> dict[str, Any]:
        """`POST /v1/experiments/{key}/stop`, optionally naming the winner."""
        body = {"winner": winner} if winner is not None else None
        result: dict[str, Any] = await self._admin("POST", f"/v1/experiments/{key}/stop", body)
        return result

    async def delete_experiment(self, key: str) -> None:
        """`DELETE /v1/experiments/{key}` (draft, completed or archived experiments)."""
        await self._admin("DELETE", f"/v1/experiments/{key}")

    async def results(self, key: str) -> dict[str, Any]:
        """`GET /v1/experiments/{key}/results`: per-arm statistics and the recommendation."""
        result: dict[str, Any] = await self._admin("GET", f"/v1/experiments/{key}/results")
        return result

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (retrying until `timeout_s`), stop the task, close
        connections. Rewards still undelivered then are dropped and counted."""
        if self._closing:
            return
        self._closing = True
        self._give_up_at = time.monotonic() + timeout_s
        if self._queue:
            self._ensure_task()
        self._wake.set()
        self._closed.set()
        task = self._task
        if task is not None:
            try:
                async with asyncio.timeout(timeout_s + 1.0):
                    await asyncio.shield(task)
            except TimeoutError:
                logger.error("reward sender did not finish within %.1f s", timeout_s)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        left = self._counters.queued - self._counters.finished
        if left:
            self._finish(left, dropped=left)
        await self._decide_http.aclose()
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncCroupier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
