"""Group commit: concurrent reward requests share one transaction.

Each request awaits a future; the flush loop takes everything pending (up to a bound), commits
it in a single transaction and resolves every future. Up to `max_in_flight` transactions run at
once, so requests arriving during a commit form the next group instead of waiting for it. A
request is answered only after its commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from croupier.errors import Unavailable
from croupier.storage.db import UNAVAILABLE_ERRORS
from croupier.storage.reward_writer import Outcome, RewardItem

logger = logging.getLogger("croupier.rewards")

WriteFn = Callable[[list[list[RewardItem]]], Awaitable[list[Outcome]]]


class RewardBuffer:
    """Collects reward requests and commits them in groups."""

    def __init__(
        self,
        write: WriteFn,
        *,
        batch_max_items: int,
        max_in_flight: int = 2,
        observe_commit_s: Callable[[float], None] | None = None,
    ) -> None:
        self._write = write
        self._observe_commit_s = observe_commit_s  # metrics: each request's wait for commit
        self._batch_max = batch_max_items
        self._pending: deque[tuple[list[RewardItem], asyncio.Future[Outcome]]] = deque()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.committed_items = 0
        self.batches = 0

    def start(self) -> None:
        """Start the flush task."""
        self._task = asyncio.create_task(self._run(), name="croupier-reward-group-commit")

    async def submit(self, items: list[RewardItem]) -> Outcome:
        """Queue one request's items; returns after they are committed (or refused)."""
        if self._closing:
            raise Unavailable("The server is shutting down; retry the request.")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._wake.set()
        started = time.perf_counter()
        outcome = await future
        if self._observe_commit_s is not None:
            self._observe_commit_s(time.perf_counter() - started)
        return outcome

    def _take(self) -> list[tuple[list[RewardItem], asyncio.Future[Outcome]]]:
        taken: list[tuple[list[RewardItem], asyncio.Future[Outcome]]] = []
        size = 0
        while self._pending and (not taken or size + len(self._pending[0][0]) <= self._batch_max):
            entry = self._pending.popleft()
            taken.append(entry)
            size += len(entry[0])
        return taken

    async def _flush(self, group: list[tuple[list[RewardItem], asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._write([items for items, _ in group])
        except UNAVAILABLE_ERRORS as exc:
            logger.warning("reward commit failed, database unavailable: %s", exc)
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(
                        Unavailable(
                            "The database is unavailable, nothing was written; "
                            "retry after the Retry-After delay."
                        )
                    )
            return
        except Exception as exc:
            logger.exception("reward commit failed")
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(
                        Unavailable(f"The rewards could not be committed ({exc}); retry shortly.")
                    )
            return
        self.batches += 1
        for (items, fut), outcome in zip(group, outcomes, strict=True):
            self.committed_items += len(items)
            if not fut.done():
                fut.set_result(outcome)

    async def _flush_then_release(
        self, group: list[tuple[list[RewardItem], asyncio.Future[Outcome]]]
    ) -> None:
        try:
            await self._flush(group)
        finally:
            self._slots.release()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()  # waiting here lets the next group grow
                group = self._take()
                if not group:
                    self._slots.release()
                    break
                task = asyncio.create_task(
                    self._flush_then_release(group), name="croupier-reward-commit"
                )
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if self._closing:
                await asyncio.gather(*self._in_flight)
                if not self._pending:
                    return
                self._wake.set()  # requests that arrived during the last commits

    async def stop(self) -> None:
        """Refuse new requests and commit what is pending."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
