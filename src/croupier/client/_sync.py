"""The synchronous client: `decide()` on the caller's thread, rewards sent by a background
thread."""

from __future__ import annotations

import logging
import threading
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


class Croupier:
    """A Croupier client for synchronous code (thread-safe).

    `decide()` never raises: on a timeout, a refused connection, an error status or a bad body
    it returns the caller's default arm as a `Decision` with reason `"fallback"`. `reward()`
    only queues; a background thread sends batches of up to `batch_size`, retrying connection
    errors, timeouts and 5xx with exponential backoff. Retrying is safe: the server keeps one
    value per (decision_id, metric) and reports repeats as duplicates.
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        common: dict[str, Any] = {
            "base_url": base_url,
            "headers": auth_headers(api_key, headers),
            "transport": transport,
        }
        self._decide_http = httpx.Client(timeout=httpx.Timeout(decide_timeout_s), **common)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), **common)
        self._batch_size = check_batch_size(batch_size)
        self._flush_interval_s = flush_interval_s
        self._max_queue = max_queue
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._queue: deque[Reward] = deque()
        self._cond = threading.Condition()
        self._counters = Counters()
        self._flush_waiters = 0
        self._closing = False
        self._give_up_at: float | None = None  # set by close(): retries end here
        self._wake = threading.Event()  # interrupts a backoff sleep when closing
        self._thread: threading.Thread | None = None
        self._decide_failing = False

    # -- decisions -------------------------------------------------------------------------

    def decide(
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
            response = self._decide_http.post(
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
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._note_failure(error)
        return fallback(experiment, default_arm, default_config, error)

    def _note_failure(self, error: str) -> None:
        if not self._decide_failing:
            logger.warning("decide failed (%s); serving default arms until it recovers", error)
            self._decide_failing = True
        else:
            logger.debug("decide failed: %s", error)

    # -- rewards ---------------------------------------------------------------------------

    def reward(
        self,
        decision_id: str | None,
        value: float,
        metric: str = "reward",
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        """Queue a reward for background delivery; False if it was not queued (never raises).

        A fallback decision has no `decision_id`; its rewards are ignored (and counted as
        dropped).
        """
        problem = valid_reward(decision_id, value)
        with self._cond:
            if problem is not None or self._closing or len(self._queue) >= self._max_queue:
                self._counters.dropped += 1
                if problem is None:
                    logger.warning(
                        "reward dropped: %s",
                        "client closed" if self._closing else "queue full",
                    )
                return False
            assert decision_id is not None
            self._queue.append(Reward(decision_id, float(value), metric, idempotency_key))
            self._counters.queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="croupier-client-rewards", daemon=True
                )
                self._thread.start()
            if len(self._queue) >= self._batch_size:
                self._cond.notify_all()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send everything queued so far now; True once all of it was acknowledged or given
        up, False if `timeout_s` passed first."""
        with self._cond:
            target = self._counters.queued
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: self._counters.finished >= target, timeout=timeout_s
                )
            finally:
                self._flush_waiters -= 1

    def reward_stats(self) -> RewardStats:
        """What the reward sender has done so far."""
        with self._cond:
            return self._counters.snapshot()

    def _next_batch(self) -> list[Reward] | None:
        """Wait for a full batch, a flush, the interval or close; None when closed and empty."""
        with self._cond:
            due: float | None = None
            while True:
                if self._queue:
                    if due is None:
                        due = time.monotonic() + self._flush_interval_s
                    urgent = self._flush_waiters > 0 or self._closing
                    if len(self._queue) >= self._batch_size or urgent or time.monotonic() >= due:
                        n = min(self._batch_size, len(self._queue))
                        return [self._queue.popleft() for _ in range(n)]
                    self._cond.wait(due - time.monotonic())
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._deliver(batch)
            except Exception:  # never let the sender thread die
                logger.exception("reward batch of %s dropped after an unexpected error", len(batch))
                with self._cond:
                    self._counters.dropped += len(batch)
                    self._counters.finished += len(batch)
                    self._cond.notify_all()

    def _deliver(self, batch: list[Reward]) -> None:
        """Send one batch until acknowledged, rejected or given up."""
        attempt = 0
        while batch:
            attempt += 1
            retry_after: float | None = None
            detail = ""
            try:
                response = self._http.post(REWARDS_PATH, content=encode_rewards(batch))
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
            with self._cond:
                self._counters.retries += 1
            if give_up_at is None:
                self._wake.wait(delay)  # close() cuts the sleep short
            else:
                time.sleep(delay)  # closing: the deadline check above bounds the sleep

    def _finish(
        self, n: int, *, accepted: int = 0, duplicates: int = 0, rejected: int = 0, dropped: int = 0
    ) -> None:
        with self._cond:
            c = self._counters
            c.finished += n
            c.accepted += accepted
            c.duplicates += duplicates
            c.rejected += rejected
            c.dropped += dropped
            if accepted or duplicates:
                c.batches += 1
            self._cond.notify_all()

    # -- admin helpers ---------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        content = encode_json(body) if body is not None else None
        response = self._http.request(method, path, content=content)
        if response.status_code >= 400:
            raise error_of(response.status_code, response.content)
        return response.json() if response.content else None

    def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/experiments` (admin key); raises `CroupierError` on failure."""
        result: dict[str, Any] = self._admin("POST", "/v1/experiments", body)
        return result

    def get_experiment(self, key: str) -> dict[str, Any]:
        """`GET /v1/experiments/{key}`."""
        result: dict[str, Any] = self._admin("GET", f"/v1/experiments/{key}")
        return result

    def start_experiment(self, key: str) -> dict[str, Any]:
        """`POST /v1/experiments/{key}/start`."""
        result: dict[str, Any] = self._admin("POST", f"/v1/experiments/{key}/start")
        return result

    def stop_experiment(self, key: str, *, winner: str | None = None) -> dict[str, Any]:
        """`POST /v1/experiments/{key}/stop`, optionally naming the winner."""
        body = {"winner": winner} if winner is not None else None
        result: dict[str, Any] = self._admin("POST", f"/v1/experiments/{key}/stop", body)
        return result

    def delete_experiment(self, key: str) -> None:
        """`DELETE /v1/experiments/{key}` (draft, completed or archived experiments)."""
        self._admin("DELETE", f"/v1/experiments/{key}")

    def results(self, key: str) -> dict[str, Any]:
        """`GET /v1/experiments/{key}/results`: per-arm statistics and the recommendation."""
        result: dict[str, Any] = self._admin("GET", f"/v1/experiments/{key}/results")
        return result

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (retrying until `timeout_s`), stop the thread, close
        connections. Rewards still undelivered then are dropped and counted."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._give_up_at = time.monotonic() + timeout_s
            self._cond.notify_all()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s + 1.0)
            if thread.is_alive():
                logger.error("reward sender did not finish within %.1f s", timeout_s)
        self._decide_http.close()
        self._http.close()

    def __enter__(self) -> Croupier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
