"""Prometheus metrics of one server process, served at `GET /metrics`.

The hot path only increments a plain dict entry (`Metrics.decision`); nothing of
prometheus-client runs per request. At scrape time a custom collector turns the counters into
metric families and reads the gauges (write-behind queue, snapshot age, Redis, optimizer)
straight from the runtime's components.

Every value is per process: with several workers, a scrape is answered by whichever worker
accepts the connection (see docs/operations.md, "Metrics").
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from croupier.runtime import Runtime

# Litestar appends "; charset=utf-8" to text/* media types itself
CONTENT_TYPE = "text/plain; version=0.0.4"

# reward commit latency buckets (seconds): a group commit is typically a few milliseconds
COMMIT_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """Counters kept as plain numbers, exported by a collector at scrape time."""

    __slots__ = (
        "_commit_bucket_counts",
        "_runtime",
        "commit_count",
        "commit_sum_s",
        "decisions",
        "registry",
        "rewards_accepted",
        "rewards_duplicate",
        "rewards_rejected",
    )

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.decisions: dict[tuple[str, str, str], int] = {}
        self.rewards_accepted = 0
        self.rewards_duplicate = 0
        self.rewards_rejected = 0
        self._commit_bucket_counts = [0] * (len(COMMIT_BUCKETS_S) + 1)  # the last is +Inf
        self.commit_count = 0
        self.commit_sum_s = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CroupierCollector(self))
        ProcessCollector(registry=self.registry)

    def decision(self, experiment: str, arm: str, reason: str) -> None:
        """Count one decision (the hot path: one dict update)."""
        key = (experiment, arm, reason)
        self.decisions[key] = self.decisions.get(key, 0) + 1

    def rewards(self, accepted: int, duplicates: int) -> None:
        """Count the items of one committed reward request."""
        self.rewards_accepted += accepted
        self.rewards_duplicate += duplicates

    def rejected(self, items: int) -> None:
        """Count reward items refused as invalid: 400, 409 or 422 (one for an unreadable body)."""
        self.rewards_rejected += items

    def observe_commit(self, seconds: float) -> None:
        """Record how long one reward request waited for its commit."""
        self._commit_bucket_counts[bisect_left(COMMIT_BUCKETS_S, seconds)] += 1
        self.commit_count += 1
        self.commit_sum_s += seconds

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of this process."""
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        """Every Croupier metric family, read now."""
        rt = self._runtime
        decisions = CounterMetricFamily(
            "croupier_decisions",
            "Decisions served by this process, by experiment, arm and reason.",
            labels=["experiment", "arm", "reason"],
        )
        for (experiment, arm, reason), count in list(self.decisions.items()):
            decisions.add_metric([experiment, arm, reason], count)
        yield decisions

        rewards = CounterMetricFamily(
            "croupier_rewards",
            "Reward items received by this process: accepted (newly written), duplicate "
            "(identical repeats) or rejected (refused with 400/409/422; nothing of that request "
            "was written).",
            labels=["outcome"],
        )
        rewards.add_metric(["accepted"], self.rewards_accepted)
        rewards.add_metric(["duplicate"], self.rewards_duplicate)
        rewards.add_metric(["rejected"], self.rewards_rejected)
        yield rewards

        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(
            (*(repr(b) for b in COMMIT_BUCKETS_S), "+Inf"), self._commit_bucket_counts, strict=True
        ):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "croupier_reward_commit_seconds",
            "Time a reward request waits for its group commit (queueing and transaction).",
            buckets=cumulative,
            sum_value=self.commit_sum_s,
        )

        buffer = getattr(rt, "rewards", None)  # set once the runtime has started
        if buffer is not None:
            yield CounterMetricFamily(
                "croupier_reward_group_commits",
                "Group commits of reward requests (one statement or transaction each); "
                "croupier_reward_group_commit_items / this is the mean group size.",
                value=buffer.batches,
            )
            yield CounterMetricFamily(
                "croupier_reward_group_commit_items",
                "Reward items in the group commits (new, duplicate or refused).",
                value=buffer.committed_items,
            )

        log = rt.log
        yield GaugeMetricFamily(
            "croupier_decision_log_queue_depth",
            "Decisions buffered in memory, waiting to be written behind.",
            value=len(log),
        )
        yield CounterMetricFamily(
            "croupier_decision_log_dropped",
            "Decisions not logged because the buffer was full (PostgreSQL unreachable).",
            value=log.dropped,
        )
        yield GaugeMetricFamily(
            "croupier_experiments_loaded",
            "Experiments in this process's policy snapshot.",
            value=len(rt.cache.policies),
        )
        feed = getattr(rt, "feed", None)  # set once the runtime has started
        if feed is not None:
            yield GaugeMetricFamily(
                "croupier_snapshot_age_seconds",
                "Seconds since this process last confirmed its policy snapshot with PostgreSQL.",
                value=max(time.monotonic() - feed.last_sync_monotonic, 0.0),
            )
            yield GaugeMetricFamily(
                "croupier_redis_connected",
                "1 while this process is subscribed to policy updates on Redis, else 0.",
                value=1.0 if feed.redis_connected else 0.0,
            )
        yield from _optimizer_families(rt.extras)


def _optimizer_families(extras: list[Any]) -> Iterator[Metric]:
    """Leader status and last cycle time of the optimizer component, if this process runs one."""
    optimizer = next((e for e in extras if hasattr(e, "is_leader")), None)
    if optimizer is None:
        return
    yield GaugeMetricFamily(
        "croupier_optimizer_leader",
        "1 while this process's optimizer holds the leader lock, else 0.",
        value=1.0 if optimizer.is_leader else 0.0,
    )
    duration_s = getattr(optimizer, "last_cycle_duration_s", None)
    if duration_s is not None:
        yield GaugeMetricFamily(
            "croupier_optimizer_cycle_seconds",
            "Duration of this process's last optimizer cycle (only the leader runs cycles).",
            value=duration_s,
        )
    cycles = getattr(optimizer, "cycles", None)
    if cycles is not None:
        yield CounterMetricFamily(
            "croupier_optimizer_cycles",
            "Optimizer cycles this process has run as the leader.",
            value=cycles,
        )


class _CroupierCollector(Collector):
    """Adapts `Metrics.families` to prometheus-client's collector protocol."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    description="This process's metrics in the Prometheus text format (no API key needed).",
    media_type=CONTENT_TYPE,
    sync_to_thread=False,
)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Scrape this process's metrics."""
    rt: Runtime = request.app.state.runtime
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE)
