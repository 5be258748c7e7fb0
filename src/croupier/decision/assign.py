"""Pure assignment: hashing a unit into [0, 1), picking an arm, evaluating targeting rules."""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from croupier.model import Rule

_TWO_64 = float(2**64)


def unit_hash(salt: bytes, unit_id: str, *, purpose: bytes = b"assign") -> float:
    """A uniform, deterministic position in [0, 1) for (experiment salt, unit, purpose)."""
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8, key=salt, person=purpose).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def unit_nonce(salt: bytes, unit_id: str, arm_index: int) -> bytes:
    """The 8-byte nonce of a sticky unit's decision id: same unit and arm → same id."""
    return hashlib.blake2b(
        unit_id.encode(), digest_size=8, key=salt, person=b"sticky", salt=bytes([arm_index])
    ).digest()


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Cumulative weights, the last forced to exactly 1.0 so bisect never runs off the end."""
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    if out:
        # the last arm with a positive weight absorbs rounding
        last = max(i for i, w in enumerate(weights) if w > 0) if any(w > 0 for w in weights) else 0
        for i in range(last, len(out)):
            out[i] = 1.0
    return tuple(out)


def pick(cum_weights: Sequence[float], u: float) -> int:
    """The arm whose cumulative-weight interval contains u ∈ [0, 1)."""
    return bisect_right(cum_weights, u)


def rule_holds(rule: Rule, context: Mapping[str, Any]) -> bool:
    """Whether one targeting rule holds; a missing attribute or incomparable types → False."""
    if rule.attribute not in context:
        return rule.op in ("not_in", "neq")
    actual = context[rule.attribute]
    op = rule.op
    if op == "eq":
        return bool(actual == rule.value)
    if op == "neq":
        return bool(actual != rule.value)
    if op == "in":
        return actual in (rule.values or ())
    if op == "not_in":
        return actual not in (rule.values or ())
    expected = rule.value
    if isinstance(actual, bool) or isinstance(expected, bool):
        return False
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        pass
    elif not (isinstance(actual, str) and isinstance(expected, str)):
        return False
    if op == "gt":
        return bool(actual > expected)
    if op == "gte":
        return bool(actual >= expected)
    if op == "lt":
        return bool(actual < expected)
    return bool(actual <= expected)  # lte


def targeted(rules: Sequence[Rule], context: Mapping[str, Any] | None) -> bool:
    """All rules hold (an experiment without rules targets everyone)."""
    if not rules:
        return True
    ctx = context or {}
    return all(rule_holds(r, ctx) for r in rules)
