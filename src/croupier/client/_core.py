"""What the sync and async clients share: typed values, request encoding, how a reward batch's
response is judged, and the retry delay. No I/O here."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

DECIDE_PATH = "/v1/decide"
REWARDS_PATH = "/v1/rewards"
MAX_BATCH = 1000  # the server's largest reward list


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The arm to use for one request.

    `reason` is the server's (`allocated`, `sticky`, `excluded`, …) or `"fallback"` when the
    server could not be asked in time; then `decision_id` is None, `arm`/`config` are the
    caller's defaults and `error` says what went wrong.
    """

    decision_id: str | None
    experiment: str
    arm: str
    config: dict[str, Any] = {}
    propensity: float | None = None
    reason: str
    error: str | None = None

    @property
    def is_fallback(self) -> bool:
        """True when this is the caller's default, not a decision of the server."""
        return self.decision_id is None


class RewardStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of the background reward sender since the client was created."""

    queued: int
    """Rewards handed to `reward()` and accepted into the queue."""
    pending: int
    """Rewards queued or in flight, not yet acknowledged or given up."""
    accepted: int
    """Rewards the server newly wrote."""
    duplicates: int
    """Rewards the server already had (a retry after a lost acknowledgement, or a repeat)."""
    rejected: int
    """Rewards the server refused (409/422 for the item, or 4xx for the whole batch)."""
    dropped: int
    """Rewards given up: queue full, client closed, or the server unreachable for too long."""
    batches: int
    """Reward requests acknowledged by the server."""
    retries: int
    """Reward requests sent again after a connection error, timeout or 5xx."""


class CroupierError(Exception):
    """An admin request failed; `status_code` and `detail` are the server's (0 if none)."""

    def __init__(self, status_code: int, detail: str, extra: list[Any] | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.extra = extra or []
        super().__init__(f"{status_code}: {detail}" if status_code else detail)


class Reward(msgspec.Struct, frozen=True, omit_defaults=True):
    """One reward as sent to `POST /v1/rewards`."""

    decision_id: str
    value: float
    metric: str = "reward"
    idempotency_key: str | None = None


class _DecideBody(msgspec.Struct, omit_defaults=True):
    experiment: str
    unit_id: str
    context: dict[str, Any] | None = None


class _Accepted(msgspec.Struct):
    accepted: int
    duplicates: int


class _ErrorBody(msgspec.Struct):
    status_code: int = 0
    detail: str = ""
    extra: list[Any] | None = None


_encoder = msgspec.json.Encoder()
decision_decoder = msgspec.json.Decoder(Decision)
_accepted_decoder = msgspec.json.Decoder(_Accepted)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


def encode_decide(experiment: str, unit_id: str, context: dict[str, Any] | None) -> bytes:
    """The decide request body."""
    return _encoder.encode(_DecideBody(experiment, unit_id, context))


def encode_rewards(items: list[Reward]) -> bytes:
    """A reward list body."""
    return _encoder.encode(items)


def encode_json(value: Any) -> bytes:
    """Any JSON body (admin requests)."""
    return _encoder.encode(value)


def fallback(
    experiment: str, default_arm: str, default_config: dict[str, Any] | None, error: str
) -> Decision:
    """The caller's default, typed like a real decision."""
    return Decision(
        decision_id=None,
        experiment=experiment,
        arm=default_arm,
        config=default_config if default_config is not None else {},
        propensity=None,
        reason="fallback",
        error=error,
    )


def error_of(status_code: int, body: bytes) -> CroupierError:
    """The server's error body as an exception (any body shape)."""
    try:
        err = _error_decoder.decode(body)
        return CroupierError(status_code, err.detail or f"HTTP {status_code}", err.extra)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:200].decode("utf-8", "replace")
        return CroupierError(status_code, f"HTTP {status_code}: {text}")


def valid_reward(decision_id: str | None, value: float) -> str | None:
    """Why a reward cannot be sent (None when it can)."""
    if not isinstance(decision_id, str) or not decision_id:
        return "no decision_id (a fallback decision has none)"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"value must be a finite number, got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after one reward request."""

    kind: Literal["done", "retry", "drop_item", "drop_batch"]
    accepted: int = 0
    duplicates: int = 0
    index: int | None = None  # drop_item: the refused item
    retry_after_s: float | None = None
    detail: str = ""


RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def judge(status_code: int, body: bytes, retry_after: str | None, batch_len: int) -> Verdict:
    """Judge a reward request's response.

    2xx: done. 409/422 naming an item: drop that item and send the rest again (the server wrote
    nothing). 408/429/5xx: retry the same batch (the server deduplicates, so a batch that was
    committed before its acknowledgement was lost comes back as duplicates). Any other 4xx:
    nothing in the batch can succeed — drop it.
    """
    if 200 <= status_code < 300:
        try:
            ok = _accepted_decoder.decode(body)
            return Verdict("done", accepted=ok.accepted, duplicates=ok.duplicates)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Verdict("done", accepted=batch_len)
    if status_code in RETRY_STATUSES or status_code >= 500:
        delay: float | None = None
        if retry_after is not None:
            try:
                delay = max(float(retry_after), 0.0)
            except ValueError:
                delay = None
        return Verdict("retry", retry_after_s=delay, detail=f"HTTP {status_code}")
    err = error_of(status_code, body)
    if status_code in (409, 422):
        for entry in err.extra:
            index = entry.get("index") if isinstance(entry, dict) else None
            if isinstance(index, int) and 0 <= index < batch_len:
                return Verdict("drop_item", index=index, detail=err.detail)
    return Verdict("drop_batch", detail=str(err))


def backoff_s(attempt: int, *, base_s: float, max_s: float, retry_after_s: float | None) -> float:
    """Delay before retry number `attempt` (1-based): exponential with jitter, or Retry-After."""
    if retry_after_s is not None:
        return min(retry_after_s, max_s)
    delay: float = min(max_s, base_s * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


@dataclass(slots=True)
class Counters:
    """Mutable counters behind `RewardStats`."""

    queued: int = 0
    finished: int = 0  # acknowledged, rejected or dropped after being queued
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    dropped: int = 0
    batches: int = 0
    retries: int = 0

    def snapshot(self) -> RewardStats:
        """A frozen copy."""
        return RewardStats(
            queued=self.queued,
            pending=self.queued - self.finished,
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=self.rejected,
            dropped=self.dropped,
            batches=self.batches,
            retries=self.retries,
        )


def auth_headers(api_key: str, headers: dict[str, str] | None) -> dict[str, str]:
    """Default headers of every request."""
    return {
        "authorization": f"Bearer {api_key}",
        "content-type": "application/json",
        "user-agent": "croupier-python-client",
        **(headers or {}),
    }


def check_batch_size(batch_size: int) -> int:
    """Batch sizes the server accepts."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
    return batch_size
