"""Croupier under a realistic mix (Locust, FastHttpUser).

Each simulated application instance asks for decisions, reports a reward for a share of them
after a delay (as an LLM app does once the user reacted), and now and then reads an
experiment's results like a dashboard would:

- `POST /v1/decide` — most requests; experiments drawn from the loaded set, unit ids from a
  pool (so sticky experiments see returning units), a small `context`;
- `POST /v1/rewards` — `REWARD_SHARE` of the allocated decisions get a reward `REWARD_DELAY_S`
  later (binary `reward`, sometimes with the `latency_ms` guardrail), sent singly or in small
  batches as the SDK does;
- `GET /v1/experiments/{key}/results` — occasionally, with the admin key.

Configuration (environment): `CROUPIER_ADMIN_KEY` (required: creates the experiments at test
start when missing, reads results), `CROUPIER_DECIDE_KEY` (decide and rewards; default the
admin key), `LOADTEST_EXPERIMENTS` (default 20). Pass/fail: see loadtests/README.md; at the
end the run exits 1 when any request failed or any answer was a 5xx, and when a latency
target given as `LOADTEST_MAX_P99_MS_<NAME>` (e.g. `LOADTEST_MAX_P99_MS_DECIDE=50`) is missed.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import time
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment

ADMIN_KEY = os.environ.get("CROUPIER_ADMIN_KEY", "")
DECIDE_KEY = os.environ.get("CROUPIER_DECIDE_KEY", "") or ADMIN_KEY
N_EXPERIMENTS = int(os.environ.get("LOADTEST_EXPERIMENTS", "20"))
REWARD_SHARE = float(os.environ.get("LOADTEST_REWARD_SHARE", "0.3"))
REWARD_DELAY_S = (0.2, 3.0)
UNITS = 20_000
COUNTRIES = ["DE", "FR", "US", "GB", "BR", "JP"]

EXPERIMENTS = [f"load.{i:03d}" for i in range(N_EXPERIMENTS)]
logging.getLogger("httpx").setLevel(logging.WARNING)  # the setup's requests, one line each
SERVER_ERRORS: dict[str, int] = {}


def experiment_body(i: int) -> dict[str, Any]:
    """A thompson, fixed or rollout experiment with 2–5 arms and a latency guardrail."""
    policy = ("thompson", "fixed", "rollout")[i % 3]
    n_arms = 2 if policy == "rollout" else 2 + i % 4
    return {
        "key": EXPERIMENTS[i],
        "policy": policy,
        "arms": [
            {"key": f"arm{j}", "control": j == 0,
             "config": {"model": f"model-{j}", "temperature": 0.2 * j,
                        "system_prompt": "You are a helpful assistant. " * 4}}
            for j in range(n_arms)
        ],
        "metrics": [
            {"name": "reward", "type": "binary", "direction": "maximize"},
            {"name": "latency_ms", "type": "continuous", "direction": "minimize",
             "max_relative_degradation": 0.5},
        ],
    }


@events.test_start.add_listener
def create_experiments(environment: Environment, **_: Any) -> None:
    """Create and start the experiments that do not exist yet (idempotent)."""
    if not ADMIN_KEY:
        raise RuntimeError("set CROUPIER_ADMIN_KEY (an admin API key of the server under test)")
    import httpx

    assert environment.host is not None
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=environment.host, headers=headers, timeout=30) as client:
        for i, key in enumerate(EXPERIMENTS):
            r = client.get(f"/v1/experiments/{key}")
            if r.status_code == 404:
                r = client.post("/v1/experiments", json=experiment_body(i))
                r.raise_for_status()
            if r.json()["status"] == "draft":
                client.post(f"/v1/experiments/{key}/start").raise_for_status()


@events.request.add_listener
def count_server_errors(name: str, response: Any, **_: Any) -> None:
    """Count 5xx answers per request name (they also count as failures)."""
    status = getattr(response, "status_code", 0) or 0
    if status >= 500:
        SERVER_ERRORS[name] = SERVER_ERRORS.get(name, 0) + 1


@events.quitting.add_listener
def check_targets(environment: Environment, **_: Any) -> None:
    """Exit code 1 on any failure, any 5xx, or a missed `LOADTEST_MAX_P99_MS_<NAME>`."""
    stats = environment.stats
    problems: list[str] = []
    if stats.total.num_requests == 0:
        problems.append("no request was made")
    if stats.total.num_failures:
        problems.append(f"{stats.total.num_failures} failed requests")
    if SERVER_ERRORS:
        problems.append(f"5xx answers: {SERVER_ERRORS}")
    for entry in stats.entries.values():
        limit = os.environ.get(f"LOADTEST_MAX_P99_MS_{entry.name.upper()}")
        if limit and entry.num_requests and entry.get_response_time_percentile(0.99) > float(limit):
            problems.append(
                f"{entry.name}: p99 {entry.get_response_time_percentile(0.99):.0f} ms > {limit} ms"
            )
    for problem in problems:
        print(f"LOADTEST FAIL: {problem}")
    if problems:
        environment.process_exit_code = 1
    else:
        print(f"LOADTEST PASS: {stats.total.num_requests} requests, 0 failures, no 5xx")


class AppInstance(FastHttpUser):
    """One application process using Croupier: decisions, delayed rewards, a results read."""

    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.decide_headers = {"Authorization": f"Bearer {DECIDE_KEY}",
                               "Content-Type": "application/json"}
        self.admin_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.due: list[tuple[float, str, float]] = []  # (when, decision_id, reward value)

    @task(20)
    def decide(self) -> None:
        """Ask which arm a unit gets; schedule a reward for a share of the answers."""
        body = {
            "experiment": random.choice(EXPERIMENTS),
            "unit_id": f"user-{random.randrange(UNITS)}",
            "context": {"country": random.choice(COUNTRIES), "plan": "pro"},
        }
        with self.client.post("/v1/decide", json=body, headers=self.decide_headers,
                              name="decide", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            out = r.json()
            if out["reason"] == "allocated" and random.random() < REWARD_SHARE:
                arm = int(out["arm"].removeprefix("arm"))
                value = 1.0 if random.random() < 0.05 + 0.01 * arm else 0.0
                when = time.monotonic() + random.uniform(*REWARD_DELAY_S)
                heapq.heappush(self.due, (when, out["decision_id"], value))

    @task(8)
    def report_rewards(self) -> None:
        """Send the rewards that are due: one alone, several as a list (as the SDK batches)."""
        now = time.monotonic()
        ready: list[tuple[float, str, float]] = []
        while self.due and self.due[0][0] <= now and len(ready) < 50:
            ready.append(heapq.heappop(self.due))
        if not ready:
            return
        items: list[dict[str, Any]] = []
        for _, decision_id, value in ready:
            items.append({"decision_id": decision_id, "value": value})
            if random.random() < 0.5:
                items.append({"decision_id": decision_id, "metric": "latency_ms",
                              "value": random.gauss(800.0, 150.0)})
        payload: Any = items[0] if len(items) == 1 else items
        name = "rewards (single)" if len(items) == 1 else "rewards (list)"
        with self.client.post("/v1/rewards", json=payload, headers=self.decide_headers,
                              name=name, catch_response=True) as r:
            if r.status_code != 202:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            elif r.json()["accepted"] + r.json()["duplicates"] != len(items):
                r.failure(f"acknowledged {r.text} for {len(items)} items")

    @task(1)
    def results(self) -> None:
        """Read one experiment's results, as a dashboard does."""
        key = random.choice(EXPERIMENTS)
        self.client.get(f"/v1/experiments/{key}/results", headers=self.admin_headers,
                        name="results")
