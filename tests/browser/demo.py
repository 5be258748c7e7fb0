"""Demo data for the dashboard: experiments with traffic and rewards, posted over HTTP.

Used by the browser test and by the screenshot command (`make screenshot`). The traffic is
simulated with a seeded generator: each arm has a true conversion rate and a latency, and
rounds of decisions and rewards are spread over time so that the optimizer reallocates
between them and the charts have a history to draw.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

PROMPTS = "support-prompt"
"""The demo's `thompson` experiment: three system prompts for a support assistant."""
RANKER = "ranker-rollout"
"""The demo's `rollout` experiment: a new ranking model staged against the old one."""
LANDING = "landing-copy"
"""The demo's `fixed` A/B test."""


@dataclass(frozen=True)
class ArmTruth:
    """What the simulation draws from for one arm."""

    rate: float
    latency_ms: float


_TRUTH: dict[str, dict[str, ArmTruth]] = {
    PROMPTS: {
        "baseline": ArmTruth(0.08, 820.0),
        "concise": ArmTruth(0.18, 640.0),
        "step-by-step": ArmTruth(0.12, 1150.0),
    },
    LANDING: {"control": ArmTruth(0.20, 0.0), "bold": ArmTruth(0.24, 0.0)},
    RANKER: {"v1": ArmTruth(0.30, 90.0), "v2": ArmTruth(0.31, 95.0)},
}


def _bodies() -> list[dict[str, Any]]:
    binary = {"name": "reward", "type": "binary", "direction": "maximize"}
    latency = {"name": "latency_ms", "type": "continuous", "direction": "minimize",
               "max_relative_degradation": 0.5}
    return [
        {
            "key": PROMPTS, "name": "Support assistant system prompt",
            "description": "Thumbs-up rate of three system prompts",
            "policy": "thompson", "min_exposures_per_arm": 30, "auto_stop": False,
            "arms": [
                {"key": "baseline", "control": True,
                 "config": {"model": "small", "prompt": "You are a helpful support agent."}},
                {"key": "concise",
                 "config": {"model": "small", "prompt": "Answer in at most three sentences."}},
                {"key": "step-by-step",
                 "config": {"model": "small", "prompt": "Think step by step, then answer."}},
            ],
            "metrics": [binary, latency],
        },
        {
            "key": LANDING, "name": "Landing page headline", "policy": "fixed",
            "min_exposures_per_arm": 50, "auto_stop": False,
            "arms": [{"key": "control", "control": True}, {"key": "bold"}],
            "metrics": [binary],
        },
        {
            "key": RANKER, "name": "Ranking model v2", "policy": "rollout",
            "stages": [{"share": 0.1, "min_duration_s": 1, "min_exposures": 50},
                       {"share": 0.5, "min_duration_s": 1, "min_exposures": 100},
                       {"share": 1.0, "min_duration_s": 3600, "min_exposures": 100}],
            "arms": [{"key": "v1", "control": True}, {"key": "v2"}],
            "metrics": [binary, {**latency, "max_relative_degradation": 0.2}],
        },
    ]


async def _round(
    client: httpx.AsyncClient, key: str, units: range, rng: random.Random
) -> None:
    """One decision per unit, then every reward in one batch."""
    truth = _TRUTH[key]
    rewards: list[dict[str, Any]] = []
    for i in units:
        r = await client.post("/v1/decide", json={"experiment": key, "unit_id": f"user-{i}"})
        r.raise_for_status()
        d = r.json()
        if d["reason"] not in ("allocated", "sticky"):
            continue
        arm = truth[d["arm"]]
        rewards.append({"decision_id": d["decision_id"],
                        "value": 1.0 if rng.random() < arm.rate else 0.0})
        if arm.latency_ms:
            rewards.append({"decision_id": d["decision_id"], "metric": "latency_ms",
                            "value": max(50.0, rng.gauss(arm.latency_ms, 150.0))})
    for start in range(0, len(rewards), 1000):
        r = await client.post("/v1/rewards", json=rewards[start : start + 1000])
        r.raise_for_status()


async def seed(
    url: str, admin_key: str, *, rounds: int = 4, per_round: int = 150, pause_s: float = 0.5,
    seed: int = 7,
) -> list[str]:
    """Create and start the demo experiments, then send `rounds` rounds of traffic
    `pause_s` apart; returns the experiment keys. The server's optimizer (if it runs)
    reallocates between rounds."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        for body in _bodies():
            r = await client.post("/v1/experiments", json=body)
            r.raise_for_status()
            r = await client.post(f"/v1/experiments/{body['key']}/start")
            r.raise_for_status()
        keys = [b["key"] for b in _bodies()]
        for n in range(rounds):
            units = range(n * per_round, (n + 1) * per_round)
            for key in keys:
                await _round(client, key, units, rng)
                # each look is recorded in the p-value history, as the optimizer's are
                (await client.get(f"/v1/experiments/{key}/results")).raise_for_status()
            await asyncio.sleep(pause_s)
        return keys
