"""Configuration: one frozen settings value, read from the environment in exactly one place.

Everything else receives a `Settings` instance; tests build one directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "CROUPIER_"


def _redact_url(url: str | None) -> str | None:
    """Hide the password of a connection URL, keeping everything else readable."""
    if not url or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


@dataclass(frozen=True, slots=True)
class Settings:
    """All of Croupier's configuration. Field names map to `CROUPIER_<NAME>` variables."""

    database_url: str | None = field(default=None, repr=False)
    """PostgreSQL URL. None starts the embedded PostgreSQL under `data_dir`."""
    redis_url: str | None = field(default=None, repr=False)
    """Redis URL. None starts the embedded Redis under `data_dir`."""
    data_dir: Path = Path(".croupier")
    """Where the embedded PostgreSQL and Redis keep their data."""
    host: str = "127.0.0.1"
    """Address the HTTP server binds to."""
    port: int = 8000
    """Port the HTTP server listens on."""
    workers: int = 1
    """Number of server worker processes."""
    redis_prefix: str = "croupier"
    """Prefix of every Redis key and channel, so several installations can share one Redis."""
    db_pool_min_size: int = 1
    """Connections each process keeps open to PostgreSQL."""
    db_pool_max_size: int = 10
    """Upper bound of connections each process opens to PostgreSQL."""
    flush_interval_ms: int = 100
    """How often the decision log is written behind (upper bound of the crash-loss window)."""
    decision_batch_max: int = 5000
    """Largest batch of decisions written in one COPY."""
    decision_buffer_max: int = 200_000
    """Decisions held in memory while PostgreSQL is unreachable; beyond this they are dropped
    (and counted) rather than growing memory without bound."""
    reward_batch_max: int = 5000
    """Largest number of rewards committed in one group-commit transaction."""
    reward_commits_in_flight: int = 2
    """Group commits of rewards each process runs at once (requests arriving meanwhile form
    the next group)."""
    snapshot_poll_interval_s: float = 0.5
    """How often each process asks PostgreSQL whether its policy snapshot or key cache is stale."""
    optimizer_interval_s: float = 5.0
    """Seconds between optimizer cycles."""
    optimizer_enabled: bool = True
    """Run the (leader-elected) optimizer. `croupier serve` runs it in a child process of its
    own, never in the serving workers (so it never competes with decisions for a worker's
    GIL); an app built directly with `create_app` (e.g. `uvicorn --factory
    croupier.app:create_app_from_env`) runs it inside that process."""
    optimizer_max_change_per_cycle: float = 0.1
    """Largest change of any arm's `thompson` weight in one optimizer cycle (0–1)."""
    optimizer_min_weight_change: float = 0.001
    """A `thompson` reallocation is written only when some weight moves at least this much,
    so the allocation history stays readable."""
    optimizer_top_two: bool = False
    """Allocate `thompson` traffic by top-two Thompson sampling instead of P(best)."""
    optimizer_shutdown_s: float = 5.0
    """How long the optimizer may take to finish its cycle when the process stops."""
    optimizer_nice: int = 10
    """Niceness the optimizer process of `croupier serve` adds to itself (0–19), so that when
    it and a serving worker want the same core the decision path wins; the optimizer is not
    latency-sensitive. On one core, a cycle at the workers' priority showed in decide's p99."""
    sticky_cache_size: int = 100_000
    """Sticky assignments each process remembers locally (LRU)."""
    http_header_read_timeout_s: float = 10.0
    """A client must send its request headers within this time (slow-client protection)."""
    max_body_bytes: int = 1_048_576
    """Largest accepted request body."""
    log_level: str = "INFO"
    """Python logging level."""

    def __repr__(self) -> str:
        shown = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("database_url", "redis_url")
        }
        shown["database_url"] = _redact_url(self.database_url)
        shown["redis_url"] = _redact_url(self.redis_url)
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"Settings({inner})"

    @property
    def uses_embedded(self) -> bool:
        """True when at least one of PostgreSQL and Redis is the embedded one."""
        return self.database_url is None or self.redis_url is None

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `CROUPIER_*` variables; unknown types raise a clear ValueError."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The `CROUPIER_*` variables that reproduce these settings (for worker processes)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[ENV_PREFIX + f.name.upper()] = (
                ("1" if value else "0") if isinstance(value, bool) else str(value)
            )
        return out


def _parse(name: str, type_name: str, raw: str) -> object:
    """Convert one environment string to the field's type."""
    env_name = ENV_PREFIX + name.upper()
    try:
        if "bool" in type_name:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "int" in type_name:
            return int(raw)
        if "float" in type_name:
            return float(raw)
        if "Path" in type_name:
            return Path(raw)
    except ValueError:
        raise ValueError(f"{env_name}={raw!r} is not a valid {type_name}") from None
    return raw
