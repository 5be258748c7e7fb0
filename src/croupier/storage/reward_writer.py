"""Commits reward batches (group commit): many requests, one statement or one transaction.

Per request the outcome is all-or-nothing: every item is either newly written, an identical
repeat of a stored value (duplicate), or the request is refused whole (409 on a conflicting
value, 422 when its experiment was deleted meanwhile). Sufficient statistics are updated in
the same transaction as the rewards they count.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg

from croupier.storage.db import RETRY_ERRORS, Conn
from croupier.storage.queries import Q


class RewardItem(NamedTuple):
    """One validated reward, attributed from its decision id."""

    decision_id: str
    metric: str
    experiment_id: int
    arm_index: int
    counted: bool
    value: float
    idempotency_key: str | None
    position: int  # index in its request, for error messages


@dataclass(frozen=True, slots=True)
class Written:
    """A request whose items are all durably stored (new or duplicate)."""

    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A request of which nothing was written."""

    status: int  # 409 or 422
    detail: str
    index: int
    field: str


Outcome = Written | Refused


class _Race(Exception):
    """Another process wrote a conflicting value between our read and our insert; redo."""


_RETRYABLE: tuple[type[Exception], ...] = (_Race, *RETRY_ERRORS)


def _plan(
    requests: list[list[RewardItem]],
    stored: dict[tuple[str, str], float],
    live_experiments: set[int],
) -> tuple[list[Outcome | None], list[list[RewardItem]], list[int]]:
    """Decide each request against stored values and earlier requests of the batch."""
    state = dict(stored)
    outcomes: list[Outcome | None] = []
    new_items: list[list[RewardItem]] = []
    duplicates: list[int] = []
    for items in requests:
        refused: Refused | None = None
        local: dict[tuple[str, str], float] = {}
        fresh: list[RewardItem] = []
        dup = 0
        for item in items:
            if item.experiment_id not in live_experiments:
                refused = Refused(
                    422,
                    f"Item {item.position}: the experiment of this decision was deleted.",
                    item.position,
                    "decision_id",
                )
                break
            key = (item.decision_id, item.metric)
            prior = local.get(key, state.get(key))
            if prior is None:
                local[key] = item.value
                fresh.append(item)
            elif prior == item.value:
                dup += 1
            else:
                refused = Refused(
                    409,
                    f"Item {item.position}: decision {item.decision_id} already has {item.metric}"
                    f"={prior!r}; a reward can be set once per decision and metric "
                    f"(this request sent {item.value!r}).",
                    item.position,
                    "value",
                )
                break
        if refused is not None:
            outcomes.append(refused)
            new_items.append([])
            duplicates.append(0)
            continue
        state.update(local)
        outcomes.append(None)
        new_items.append(fresh)
        duplicates.append(dup)
    return outcomes, new_items, duplicates


async def _attempt(conn: Conn, requests: list[list[RewardItem]]) -> list[Outcome]:
    all_items = [it for items in requests for it in items]
    keys = list({(it.decision_id, it.metric) for it in all_items})
    rows = await conn.fetch(Q["reward_existing"], [k[0] for k in keys], [k[1] for k in keys])
    stored = {(r["decision_id"], r["metric"]): r["value"] for r in rows}
    exp_ids = list({it.experiment_id for it in all_items})
    live = {r["id"] for r in await conn.fetch(Q["experiments_existing"], exp_ids)}
    outcomes, new_items, duplicates = _plan(requests, stored, live)
    fresh = [it for items in new_items for it in items]
    if fresh:
        inserted = await conn.fetch(
            Q["reward_insert"],
            *_reward_columns(fresh),
        )
        if len(inserted) != len(fresh):
            raise _Race
        agg = _aggregate(fresh)
        if agg:
            await conn.execute(
                Q["metric_stats_add"],
                *_columns(agg),
            )
    final: list[Outcome] = []
    for outcome, items, dup in zip(outcomes, new_items, duplicates, strict=True):
        final.append(outcome if outcome is not None else Written(len(items), dup))
    return final


def _reward_columns(items: list[RewardItem]) -> list[list[Any]]:
    """The per-column arrays the reward INSERTs unnest (RewardItem order, without position)."""
    return _columns([tuple(it)[:7] for it in items], width=7)


def _columns(rows: Sequence[tuple[Any, ...]], *, width: int = 6) -> list[list[Any]]:
    """Rows → one list per column (what `unnest($1::…[], $2::…[], …)` takes)."""
    return [[row[i] for row in rows] for i in range(width)]


def _aggregate(items: list[RewardItem]) -> list[tuple[int, str, int, int, float, float]]:
    """Per (experiment, metric, arm), in key order: (…, n, sum, sum of squares) of the counted
    items (key order: concurrent commits lock metric_stats rows in the same order)."""
    agg: dict[tuple[int, str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for it in items:
        if it.counted:
            a = agg[(it.experiment_id, it.metric, it.arm_index)]
            a[0] += 1
            a[1] += it.value
            a[2] += it.value * it.value
    return [(k[0], k[1], k[2], int(v[0]), v[1], v[2]) for k, v in sorted(agg.items())]


# the fast path gives way to the general one on these (nothing was written)
_FAST_PATH_REFUSED: tuple[type[Exception], ...] = (
    asyncpg.exceptions.UniqueViolationError,
    asyncpg.exceptions.ForeignKeyViolationError,
    *RETRY_ERRORS,
)


async def _fast_path(pool: asyncpg.Pool, requests: list[list[RewardItem]]) -> list[Outcome] | None:
    """The common case in one statement and one round trip: every item new, every experiment
    alive. None when that does not hold (the statement failed on a constraint and wrote
    nothing); the general path decides then."""
    items = [it for request in requests for it in request]
    if len({(it.decision_id, it.metric) for it in items}) != len(items):
        return None  # a key repeated within the group: duplicates or conflicts to decide
    agg = _aggregate(items)
    try:
        row = await pool.fetchrow(
            Q["reward_commit_fresh"],
            *_reward_columns(items),
            *_columns(agg),
        )
    except _FAST_PATH_REFUSED:
        return None
    if row is None or row["inserted"] != len(items):
        return None  # not expected: a statement that inserts fewer rows fails instead
    return [Written(len(request), 0) for request in requests]


async def write_rewards(pool: asyncpg.Pool, requests: list[list[RewardItem]]) -> list[Outcome]:
    """Commit a group of reward requests: one statement when every item is new (the common
    case), else one transaction that sorts out duplicates and conflicts (retried on races and
    deadlocks)."""
    fast = await _fast_path(pool, requests)
    if fast is not None:
        return fast
    for attempt in range(8):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await _attempt(conn, requests)
        except _RETRYABLE:
            await asyncio.sleep(0.005 * (attempt + 1))
    raise RuntimeError("reward batch kept racing with other writers; giving up after 8 attempts")
