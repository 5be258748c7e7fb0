"""The Python SDK against a live server on a real socket (uvicorn in a thread): decisions,
fallbacks that never raise, and background reward batches delivered exactly once."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn

from croupier.app import create_app
from croupier.client import AsyncCroupier, Croupier, CroupierError, Decision
from croupier.settings import Settings
from tests.integration.helpers import experiment_body

_SLACK_S = 0.3  # scheduling slack on a loaded machine, on top of a timeout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`create_app(settings)` served by uvicorn on 127.0.0.1 in a thread of its own."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=self.port, lifespan="on",
            log_level="warning", ws="none", http="h11",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            assert not self._thread.is_alive()
            self._server = self._thread = None


@pytest.fixture
def live(settings: Settings, keys: dict[str, str]) -> Iterator[LiveServer]:
    """A started live server on a free port (keys exist before it starts)."""
    server = LiveServer(settings, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _thompson_body(key: str = "prompts") -> dict[str, Any]:
    return experiment_body(key=key, policy="thompson", arms=3)


def _setup(url: str, admin_key: str, key: str = "prompts") -> None:
    with Croupier(url, admin_key) as admin:
        admin.create_experiment(_thompson_body(key))
        assert admin.start_experiment(key)["status"] == "running"


async def test_sync_decide_and_reward_round_trip(
    live: LiveServer, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """Typed decisions come back from the server and every reward reaches the database."""
    _setup(live.url, keys["admin"])
    with Croupier(live.url, keys["decide"], decide_timeout_s=5.0) as croupier:
        decisions = [
            croupier.decide("prompts", f"user-{i}", {"country": "FR"}, default_arm="arm0")
            for i in range(30)
        ]
        for i, d in enumerate(decisions):
            assert isinstance(d, Decision) and not d.is_fallback
            assert d.reason == "allocated" and d.arm in {"arm0", "arm1", "arm2"}
            assert d.config == {"prompt": f"variant {d.arm[-1]}"}
            assert d.propensity is not None and 0 < d.propensity <= 1
            assert croupier.reward(d.decision_id, float(i % 2))
        assert croupier.flush(timeout_s=10)
        stats = croupier.reward_stats()
    assert (stats.accepted, stats.duplicates, stats.pending, stats.dropped) == (30, 0, 0, 0)
    rows = await db.fetch("SELECT decision_id, value FROM rewards")
    assert {r["decision_id"]: r["value"] for r in rows} == {
        d.decision_id: float(i % 2) for i, d in enumerate(decisions)
    }


async def test_async_decide_reward_and_results(
    live: LiveServer, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """The async client decides, rewards in the background and reads results."""
    async with AsyncCroupier(live.url, keys["admin"]) as admin:
        await admin.create_experiment(_thompson_body())
        await admin.start_experiment("prompts")
    async with AsyncCroupier(live.url, keys["decide"], decide_timeout_s=5.0) as croupier:
        decisions = await asyncio.gather(
            *(croupier.decide("prompts", f"u{i}", default_arm="arm0") for i in range(40))
        )
        assert all(d.reason == "allocated" for d in decisions)
        for d in decisions:
            croupier.reward(d.decision_id, 1.0)
        assert await croupier.flush(timeout_s=10)
        assert croupier.reward_stats().accepted == 40
    assert await db.fetchval("SELECT count(DISTINCT decision_id) FROM rewards") == 40
    async with AsyncCroupier(live.url, keys["admin"]) as admin:
        await asyncio.sleep(0.2)  # the decision log is written behind
        results = await admin.results("prompts")
        with pytest.raises(CroupierError) as err:
            await admin.get_experiment("nope")
    assert sum(a["exposures"] for a in results["arms"]) == 40
    assert err.value.status_code == 404


class _LoseFirstAck(httpx.HTTPTransport):
    """Forwards every request; replaces the first rewards acknowledgement with a 503 (the
    batch was committed, the client does not know) and records each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path != "/v1/rewards":
            return response
        self.batch_sizes.append(len(msgspec.json.decode(request.content)))
        if len(self.batch_sizes) == 1:
            response.read()
            response.close()
            return httpx.Response(503, headers={"retry-after": "0"}, json={"detail": "lost"})
        return response


async def test_batches_deliver_every_reward_exactly_once(
    live: LiveServer, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """250 rewards go out in batches of at most 100; a committed batch whose acknowledgement is
    lost is retried and comes back as duplicates, so the database holds each reward once."""
    _setup(live.url, keys["admin"])
    transport = _LoseFirstAck()
    with Croupier(
        live.url, keys["decide"], decide_timeout_s=5.0, transport=transport,
        flush_interval_s=60, backoff_base_s=0.01,
    ) as croupier:
        ids = [croupier.decide("prompts", f"u{i}", default_arm="arm0").decision_id
               for i in range(250)]
        for decision_id in ids:
            croupier.reward(decision_id, 1.0)
        assert croupier.flush(timeout_s=10)
        stats = croupier.reward_stats()
    assert max(transport.batch_sizes) == 100 and sum(transport.batch_sizes[1:]) == 250
    assert stats.retries == 1 and stats.duplicates == transport.batch_sizes[0]
    # the first batch's own acknowledgement was lost: the client saw it only as duplicates
    assert stats.accepted == 250 - transport.batch_sizes[0]
    assert stats.pending == stats.dropped == stats.rejected == 0
    assert await db.fetchval("SELECT count(*) FROM rewards") == 250
    assert await db.fetchval("SELECT count(DISTINCT decision_id) FROM rewards") == 250


async def test_refused_item_is_dropped_and_the_rest_delivered(
    live: LiveServer, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """A binary reward of 0.5 is refused alone; the rest of its batch is sent again and kept."""
    _setup(live.url, keys["admin"])
    with Croupier(live.url, keys["decide"], decide_timeout_s=5.0) as croupier:
        ids = [croupier.decide("prompts", f"u{i}", default_arm="arm0").decision_id
               for i in range(10)]
        for i, decision_id in enumerate(ids):
            croupier.reward(decision_id, 0.5 if i == 4 else 1.0)
        assert croupier.flush(timeout_s=10)
        stats = croupier.reward_stats()
    assert (stats.accepted, stats.rejected, stats.dropped) == (9, 1, 0)
    stored = {r["decision_id"] for r in await db.fetch("SELECT decision_id FROM rewards")}
    assert stored == set(ids) - {ids[4]}


async def test_rewards_wait_for_a_restarted_server(
    settings: Settings, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """Rewards queued while the server is down are retried and delivered once it is back."""
    port = _free_port()
    first = LiveServer(settings, port)
    first.start()
    try:
        _setup(first.url, keys["admin"])
        with Croupier(first.url, keys["decide"], decide_timeout_s=5.0) as probe:
            ids = [probe.decide("prompts", f"u{i}", default_arm="arm0").decision_id
                   for i in range(20)]
    finally:
        first.stop()
    with Croupier(first.url, keys["decide"], backoff_base_s=0.05, backoff_max_s=0.2) as croupier:
        for decision_id in ids:
            croupier.reward(decision_id, 1.0)
        assert not croupier.flush(timeout_s=0.5)  # nothing is listening
        assert croupier.reward_stats().retries >= 1
        second = LiveServer(settings, port)
        second.start()
        try:
            assert croupier.flush(timeout_s=10)
            stats = croupier.reward_stats()
        finally:
            croupier.close()
            second.stop()
    assert (stats.accepted, stats.dropped) == (20, 0)
    assert await db.fetchval("SELECT count(*) FROM rewards") == 20


def test_sync_fallback_on_dead_server() -> None:
    """With nothing listening, decide returns the default arm quickly and nothing raises."""
    url = f"http://127.0.0.1:{_free_port()}"
    croupier = Croupier(url, "crp_x", decide_timeout_s=0.2, backoff_base_s=0.01)
    started = time.monotonic()
    d = croupier.decide("prompts", "u1", default_arm="short", default_config={"p": "Be brief."})
    assert time.monotonic() - started < 0.2 + _SLACK_S
    assert (d.arm, d.config, d.reason, d.decision_id, d.is_fallback) == (
        "short", {"p": "Be brief."}, "fallback", None, True
    )
    assert d.error and "Connect" in d.error
    assert croupier.reward(d.decision_id, 1.0) is False  # a fallback has nothing to reward
    assert croupier.reward("AQAAAAEA-not-delivered", 1.0) is True
    started = time.monotonic()
    croupier.close(timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    stats = croupier.reward_stats()
    assert (stats.pending, stats.accepted, stats.dropped) == (0, 0, 2)
    assert croupier.decide("prompts", "u1", default_arm="short").reason == "fallback"


async def test_async_fallback_on_dead_server() -> None:
    """The async client falls back within its deadline and closes without hanging."""
    url = f"http://127.0.0.1:{_free_port()}"
    async with AsyncCroupier(url, "crp_x", decide_timeout_s=0.2) as croupier:
        started = time.monotonic()
        d = await croupier.decide("prompts", "u1", default_arm="short")
        assert time.monotonic() - started < 0.2 + _SLACK_S
        assert (d.arm, d.config, d.reason, d.decision_id) == ("short", {}, "fallback", None)
        croupier.reward("AQAAAAEA-not-delivered", 1.0)
        started = time.monotonic()
        await croupier.close(timeout_s=0.3)
        assert time.monotonic() - started < 2.0
    assert croupier.reward_stats().dropped == 1


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


async def test_fallback_when_the_server_does_not_answer(silent_port: int) -> None:
    """A server that accepts but never answers costs the async caller at most its timeout
    and the sync caller at most one read timeout."""
    url = f"http://127.0.0.1:{silent_port}"
    async with AsyncCroupier(url, "crp_x", decide_timeout_s=0.2) as client:
        started = time.monotonic()
        d = await client.decide("prompts", "u1", default_arm="short")
        elapsed = time.monotonic() - started
    assert d.reason == "fallback" and 0.15 < elapsed < 0.2 + _SLACK_S, elapsed
    with Croupier(url, "crp_x", decide_timeout_s=0.2) as sync_client:
        started = time.monotonic()
        d = sync_client.decide("prompts", "u1", default_arm="short")
        elapsed = time.monotonic() - started
    assert d.reason == "fallback" and "Timeout" in (d.error or "")
    assert elapsed < 2 * 0.2 + _SLACK_S, elapsed  # per-phase timeouts: at most connect + read


async def test_fallback_on_error_statuses(live: LiveServer, keys: dict[str, str]) -> None:
    """An unknown experiment (404) and a bad key (401) fall back with the server's reason."""
    with Croupier(live.url, keys["decide"], decide_timeout_s=5.0) as croupier:
        d = croupier.decide("missing", "u1", default_arm="a")
        assert d.reason == "fallback" and d.error and d.error.startswith("404")
    async with AsyncCroupier(live.url, "crp_wrong", decide_timeout_s=5.0) as bad:
        d = await bad.decide("missing", "u1", default_arm="a", default_config={"k": 1})
        assert d.reason == "fallback" and (d.error or "").startswith("401")
        assert d.config == {"k": 1}


async def test_llm_routing_example_runs(
    live: LiveServer, keys: dict[str, str], db: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """examples/llm_routing.py creates its experiment, routes every request and rewards it."""
    path = Path(__file__).parents[2] / "examples" / "llm_routing.py"
    spec = importlib.util.spec_from_file_location("llm_routing", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "llm_routing", example)  # dataclasses look it up
    spec.loader.exec_module(example)
    argv = ["--url", live.url, "--key", keys["admin"], "--requests", "300", "--delay-ms", "0",
            "--decide-timeout-s", "5"]  # a loaded CI machine must not turn decisions into fallbacks
    assert await asyncio.to_thread(example.main, argv) == 0
    out = capsys.readouterr().out
    assert "created experiment 'support-prompt'" in out and "rewards sent 300" in out
    assert await db.fetchval("SELECT count(*) FROM rewards") == 300
