"""Route a (simulated) LLM call through Croupier: which system prompt gets the most thumbs-up?

Runs offline: the "model" is a local function whose chance of a good answer depends on the
system prompt it is given. Croupier does not know that; it learns it from the rewards and its
optimizer moves traffic toward the best prompt (Thompson sampling).

    croupier serve                                   # shell 1: prints an admin key once
    python examples/llm_routing.py --key crp_...     # shell 2

Step by step in docs/sdk.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

from croupier.client import Croupier, CroupierError

EXPERIMENT = {
    "name": "System prompt for the support assistant",
    "policy": "thompson",
    "arms": [
        {"key": "concise", "control": True,
         "config": {"system_prompt": "Answer in one short sentence."}},
        {"key": "step_by_step",
         "config": {"system_prompt": "Think step by step, then answer."}},
        {"key": "with_example",
         "config": {"system_prompt": "Answer, then give one concrete example."}},
    ],
    "metrics": [{"name": "reward", "type": "binary", "direction": "maximize"}],
}
DEFAULT_ARM = "concise"  # what the application uses when Croupier cannot answer in time
DEFAULT_CONFIG = EXPERIMENT["arms"][0]["config"]  # type: ignore[index]

# The simulated model's hidden truth: how often each system prompt earns a thumbs-up.
THUMBS_UP_RATE = {
    "Answer in one short sentence.": 0.55,
    "Think step by step, then answer.": 0.70,
    "Answer, then give one concrete example.": 0.62,
}
QUESTIONS = [
    "How do I reset my password?",
    "Why was I charged twice?",
    "Can I export my data to CSV?",
    "How do I add a team member?",
]


@dataclass(frozen=True)
class Answer:
    """What the simulated model returns."""

    text: str
    thumbs_up: bool


def simulated_llm(system_prompt: str, question: str, rng: random.Random) -> Answer:
    """Stand-in for a chat-completion call: quality depends only on the system prompt."""
    good = rng.random() < THUMBS_UP_RATE.get(system_prompt, 0.5)
    return Answer(text=f"[{system_prompt}] answer to {question!r}", thumbs_up=good)


def ensure_running(croupier: Croupier, key: str) -> None:
    """Create and start the experiment, or reuse it if it is already there."""
    try:
        croupier.create_experiment({"key": key, **EXPERIMENT})
        print(f"created experiment {key!r}")
    except CroupierError as exc:
        if exc.status_code != 409:
            raise
        print(f"experiment {key!r} exists; reusing it")
    status = croupier.get_experiment(key)["status"]
    if status == "draft":
        croupier.start_experiment(key)
    elif status != "running":
        sys.exit(
            f"experiment {key!r} is {status}; pass --experiment with a new key to run again"
        )


def _num(value: float | None, width: int) -> str:
    return f"{value:{width}.3f}" if value is not None else "-".rjust(width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Croupier server URL")
    parser.add_argument("--key", default=os.environ.get("CROUPIER_API_KEY"),
                        help="an admin key (env CROUPIER_API_KEY)")
    parser.add_argument("--experiment", default="support-prompt")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--delay-ms", type=float, default=5.0,
                        help="pause between requests, so the optimizer (every 5 s) sees traffic")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--decide-timeout-s", type=float, default=0.2,
                        help="budget of one decision before the default prompt is used")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("pass --key (the admin key `croupier serve` printed) or set CROUPIER_API_KEY")
    rng = random.Random(args.seed)

    # In an application the admin setup is done once, and requests use a `decide` key.
    with Croupier(args.url, args.key, decide_timeout_s=args.decide_timeout_s) as croupier:
        ensure_running(croupier, args.experiment)
        window: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        thumbs_up = 0
        started = time.monotonic()
        for i in range(1, args.requests + 1):
            # 1. ask Croupier which prompt to use (never raises; 0.2 s budget)
            decision = croupier.decide(
                args.experiment, unit_id=f"request-{i}", context={"channel": "chat"},
                default_arm=DEFAULT_ARM, default_config=DEFAULT_CONFIG,
            )
            # 2. call the model with that prompt
            answer = simulated_llm(decision.config["system_prompt"], rng.choice(QUESTIONS), rng)
            # 3. report the outcome (queued; sent in batches in the background)
            croupier.reward(decision.decision_id, 1.0 if answer.thumbs_up else 0.0)

            window[decision.arm] += 1
            reasons[decision.reason] += 1
            thumbs_up += answer.thumbs_up
            if i % 500 == 0 or i == args.requests:
                shares = "  ".join(
                    f"{arm} {window[arm] / sum(window.values()):5.1%}"
                    for arm in ("concise", "step_by_step", "with_example")
                )
                print(f"{i:6d} requests  thumbs-up {thumbs_up / i:5.1%}  last window: {shares}")
                window.clear()
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)

        croupier.flush()
        stats = croupier.reward_stats()
        elapsed = time.monotonic() - started
        print(f"\n{args.requests} requests in {elapsed:.1f} s; decisions by reason: "
              f"{dict(reasons)}; rewards sent {stats.accepted}, dropped {stats.dropped}")

        time.sleep(2.5)  # exposures are written behind; results include them within 2 s
        results = croupier.results(args.experiment)
        print(f"\nexperiment {args.experiment!r} ({results['status']}):")
        header = ("arm", "weight", "exposures", "mean", "95% CI", "P(best)")
        print("{:14} {:>7} {:>9} {:>6} {:>15} {:>8}".format(*header))
        for arm in results["arms"]:
            lo, hi = arm["ci"] or (None, None)
            print(f"{arm['arm']:14} {_num(arm['weight'], 7)} {arm['exposures']:9d} "
                  f"{_num(arm['mean'], 6)} [{_num(lo, 5)}, {_num(hi, 5)}] "
                  f"{_num(arm['p_best'], 8)}")
        rec = results["recommendation"]
        print(f"recommendation: {rec['action']} {rec.get('arm') or ''} — {rec['reason']}")
        print(f"\ndashboard: {args.url}/ui")
    return 0


if __name__ == "__main__":
    sys.exit(main())
