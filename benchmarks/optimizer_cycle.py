"""How long one optimizer cycle takes over 1,000 running experiments with data.

    python benchmarks/optimizer_cycle.py [--experiments 1000] [--pg-url URL] [--redis-url URL]
                                         [--out benchmarks/results/optimizer.json]

It creates a fresh database (dropped at the end) and Redis prefix, creates the experiments
through the admin service (the benchmark mix of `run.py`: 40 % thompson, 40 % fixed, 20 %
rollout; 2–8 arms; metrics `reward` binary, guardrails `latency_ms` continuous and `error`
binary; `auto_stop` off so nothing leaves the running set), starts them, writes realistic
sufficient statistics (200–20,000 exposures per arm, conversion 4–9 %, latency ≈ 300 ms) and
times `Optimizer.run_cycle()`:

- `cold`: the first cycle, every experiment new to the optimizer (thompson reallocations are
  written: up to 400 changes);
- `unchanged`: the next cycles with no new data (only the timing rules can act);
- `changed_10pct` / `changed_100pct`: cycles after new exposures and rewards arrived for 10 %
  or all of the experiments.

Every figure is wall time of one cycle in this process, the median of `--rounds` cycles.
Not a test: nothing passes or fails (the target is ≤ 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import experiment_bodies  # noqa: E402  (benchmarks/ is not a package)

STATS_SQL = """
UPDATE arm_stats SET exposures = e.n, expected_exposures = e.n
FROM (SELECT experiment_id, arm_index,
             200 + (hashint4(experiment_id * 64 + arm_index) & 16383)::bigint AS n
      FROM arm_stats) e
WHERE arm_stats.experiment_id = e.experiment_id AND arm_stats.arm_index = e.arm_index;
UPDATE metric_stats m SET
    n = CASE WHEN m.metric = 'latency_ms' THEN a.exposures / 2 ELSE a.exposures / 2 END,
    sum = CASE m.metric
        WHEN 'reward' THEN floor(a.exposures * (0.04 + 0.01 * (m.arm_index % 5)))
        WHEN 'error' THEN floor(a.exposures * 0.01)
        ELSE (a.exposures / 2) * 300.0 END,
    sum_sq = CASE m.metric
        WHEN 'reward' THEN floor(a.exposures * (0.04 + 0.01 * (m.arm_index % 5)))
        WHEN 'error' THEN floor(a.exposures * 0.01)
        ELSE (a.exposures / 2) * (300.0 * 300.0 + 50.0 * 50.0) END
FROM arm_stats a
WHERE a.experiment_id = m.experiment_id AND a.arm_index = m.arm_index;
"""

BUMP_SQL = """
UPDATE arm_stats SET exposures = exposures + 50, expected_exposures = expected_exposures + 50
WHERE experiment_id % $1 = $2;
UPDATE metric_stats SET n = n + 25,
    sum = sum + CASE metric WHEN 'latency_ms' THEN 25 * 300.0 WHEN 'reward' THEN 3 ELSE 0 END,
    sum_sq = sum_sq + CASE metric WHEN 'latency_ms' THEN 25 * (300.0 * 300.0 + 2500.0)
                               WHEN 'reward' THEN 3 ELSE 0 END
WHERE experiment_id % $1 = $2;
"""


async def _bump(conn: Any, modulus: int, remainder: int) -> None:
    for sql in BUMP_SQL.strip().split(";\n"):
        if sql.strip():
            await conn.execute(sql, modulus, remainder)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg
    import msgspec
    import numpy as np
    import redis.asyncio as aioredis

    from croupier.admin.schemas import ExperimentCreate
    from croupier.optimizer.loop import Optimizer
    from croupier.runtime import Runtime
    from croupier.settings import Settings

    token = secrets.token_hex(4)
    db = f"bench_opt_{token}"
    admin_url = f"{args.pg_url.rstrip('/')}/postgres"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{db}"')
    await conn.close()
    dsn = f"{args.pg_url.rstrip('/')}/{db}"
    settings = Settings(
        database_url=dsn,
        redis_url=args.redis_url,
        redis_prefix=f"bench_opt_{token}",
        optimizer_enabled=False,
        log_level="WARNING",
    )
    rt = Runtime(settings)
    result: dict[str, Any] = {"experiments": args.experiments, "database": db}
    try:
        await rt.start()
        started = time.perf_counter()
        bodies = experiment_bodies(args.experiments)
        for body in bodies:
            body["auto_stop"] = False
            await rt.experiments.create(msgspec.convert(body, ExperimentCreate), "bench")
        async with rt.pool.acquire() as c:
            await c.execute(
                "UPDATE experiments SET status = 'running', started_at = now(), "
                "stage_started_at = now(), version = nextval('change_version')"
            )
            for sql in STATS_SQL.strip().split(";\n"):
                if sql.strip():
                    await c.execute(sql)
        result["load_s"] = round(time.perf_counter() - started, 1)
        print(f"loaded {args.experiments} experiments in {result['load_s']} s", file=sys.stderr)

        optimizer = Optimizer(
            settings, pool=rt.pool, redis=rt.redis, redis_keys=rt.redis_keys, cache=rt.cache,
            rng=np.random.default_rng(0),
        )

        async def cycle() -> tuple[float, int, int]:
            t0 = time.perf_counter()
            report = await optimizer.run_cycle()
            dt = time.perf_counter() - t0
            assert report.failures == 0, "a tick failed (see the log)"
            phases_seen.append(dict(getattr(optimizer.ctx, "last_phases", {})))
            return dt, report.changes, report.experiments

        phases: dict[str, Any] = {}
        phases_seen: list[dict[str, float]] = []
        dt, changes, n = await cycle()
        phases["cold"] = {
            "cycles_s": [round(dt, 3)], "changes": [changes], "experiments": n,
            "steps": phases_seen[-1:],
        }
        print(f"cold: {dt:.3f} s, {changes} changes {phases_seen[-1:]}", file=sys.stderr)

        async def phase(name: str, modulus: int | None) -> None:
            times, changed = [], []
            first = len(phases_seen)
            for r in range(args.rounds):
                if modulus is not None:
                    async with rt.pool.acquire() as c:
                        await _bump(c, modulus, r % modulus)
                dt, changes, _ = await cycle()
                times.append(round(dt, 3))
                changed.append(changes)
            phases[name] = {
                "cycles_s": times, "median_s": statistics.median(times), "changes": changed,
                "steps": phases_seen[first:],
            }
            print(f"{name}: median {statistics.median(times):.3f} s {times} changes {changed}\n"
                  f"  steps {phases_seen[first:]}", file=sys.stderr)

        await phase("unchanged", None)
        await phase("changed_10pct", 10)
        await phase("changed_100pct", 1)
        await phase("unchanged_after", None)
        result["phases"] = phases
    finally:
        await rt.stop()
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()
        client = aioredis.from_url(args.redis_url)
        async for k in client.scan_iter(match=f"bench_opt_{token}*", count=1000):
            await client.delete(k)
        await client.aclose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "optimizer.json")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["phases"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
