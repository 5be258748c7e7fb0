"""Pure parts of the hot path: ids, hashing, assignment, targeting, snapshot swaps."""

from __future__ import annotations

import msgspec
import pytest

from croupier.decision.assign import cumulative, pick, rule_holds, targeted, unit_hash
from croupier.decision.decide import Decider
from croupier.decision.exposure import DecisionLog
from croupier.decision.ids import DecisionIdCodec
from croupier.decision.policy_cache import PolicyCache
from croupier.model import PolicyData, Rule

SECRET = b"0123456789abcdef0123456789abcdef"


def policy_data(**over: object) -> PolicyData:
    """A running two-arm fixed policy, overridable."""
    base: dict[str, object] = {
        "experiment_id": 7,
        "key": "exp",
        "version": 1,
        "status": "running",
        "ended_status": None,
        "policy": "fixed",
        "sticky": True,
        "salt": "s" * 32,
        "allocation_id": 1,
        "weights": [0.5, 0.5],
        "arm_keys": ["a", "b"],
        "configs": [msgspec.Raw(b'{"p":1}'), msgspec.Raw(b'{"p":2}')],
        "control_index": 0,
        "winner_index": None,
        "targeting": [],
        "traffic_fraction": 1.0,
        "metric_types": {"reward": "binary"},
    }
    base.update(over)
    return PolicyData(**base)  # type: ignore[arg-type]


def decider() -> Decider:
    """A decider with no shared sticky store."""
    return Decider(
        codec=DecisionIdCodec(SECRET), log=DecisionLog(max_events=1000), sticky_cache_size=100
    )


def test_decision_id_round_trip() -> None:
    """An id decodes to the experiment, arm and counted flag it was made with."""
    codec = DecisionIdCodec(SECRET)
    did = codec.encode(123456, 31, True, b"\x01" * 8)
    assert len(did) == 32
    ref = codec.decode(did)
    assert ref is not None and (ref.experiment_id, ref.arm_index, ref.counted) == (123456, 31, True)


@pytest.mark.parametrize("position", [0, 5, 12, 20, 31])
def test_decision_id_tampering_is_detected(position: int) -> None:
    """Changing any character of an id, or signing with another secret, makes it unknown."""
    codec = DecisionIdCodec(SECRET)
    did = codec.encode(1, 0, True, b"\x00" * 8)
    replacement = "A" if did[position] != "A" else "B"
    assert codec.decode(did[:position] + replacement + did[position + 1 :]) is None
    assert DecisionIdCodec(b"x" * 32).decode(did) is None
    assert codec.decode("not-an-id") is None
    assert codec.decode("é" * 32) is None


def test_unit_hash_is_uniform_and_deterministic() -> None:
    """Hash positions are reproducible and spread evenly over [0, 1)."""
    values = [unit_hash(b"salt", f"user-{i}") for i in range(20_000)]
    assert values[:10] == [unit_hash(b"salt", f"user-{i}") for i in range(10)]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = [sum(1 for v in values if k / 10 <= v < (k + 1) / 10) for k in range(10)]
    assert all(1800 < d < 2200 for d in deciles)


def test_pick_respects_weights_and_zero_weight_arms() -> None:
    """bisect on cumulative weights never lands on a zero-weight arm, even at the edges."""
    cum = cumulative([0.2, 0.0, 0.8, 0.0])
    assert cum[-1] == 1.0
    assert pick(cum, 0.0) == 0
    assert pick(cum, 0.1999) == 0
    assert pick(cum, 0.2) == 2
    assert pick(cum, 0.999999999) == 2


@pytest.mark.parametrize(
    ("rule", "context", "expected"),
    [
        (Rule("country", "in", values=["US", "CA"]), {"country": "US"}, True),
        (Rule("country", "in", values=["US", "CA"]), {"country": "FR"}, False),
        (Rule("country", "not_in", values=["US"]), {}, True),
        (Rule("plan", "eq", value="pro"), {"plan": "pro"}, True),
        (Rule("plan", "neq", value="pro"), {"plan": "free"}, True),
        (Rule("age", "gt", value=18), {"age": 19}, True),
        (Rule("age", "gte", value=18), {"age": 18}, True),
        (Rule("age", "lt", value=18), {"age": 18}, False),
        (Rule("age", "lte", value=18.5), {"age": 18}, True),
        (Rule("age", "gt", value=18), {"age": "nineteen"}, False),
        (Rule("age", "gt", value=18), {}, False),
        (Rule("flag", "gt", value=0), {"flag": True}, False),
    ],
)
def test_targeting_rules(rule: Rule, context: dict[str, object], expected: bool) -> None:
    """Each operator behaves as documented; missing or incomparable attributes do not match."""
    assert rule_holds(rule, context) is expected


def test_all_rules_must_hold() -> None:
    """Targeting is a conjunction; no rules target everyone."""
    rules = [Rule("a", "eq", value=1), Rule("b", "eq", value=2)]
    assert targeted(rules, {"a": 1, "b": 2})
    assert not targeted(rules, {"a": 1, "b": 3})
    assert targeted([], None)


def test_sticky_hash_policy_repeats_share_the_decision_id() -> None:
    """A sticky unit gets the same arm and id; the repeat says `sticky` and is not logged again."""
    d = decider()
    cache = PolicyCache()
    cache.apply(policy_data())
    p = cache.policies["exp"]
    first = d.decide(p, "u1", None)
    again = d.decide(p, "u1", None)
    assert first is not None and again is not None
    assert (first.reason, again.reason) == ("allocated", "sticky")
    assert first.decision_id == again.decision_id and first.arm == again.arm
    assert len(d.log) == 1
    # another process (fresh decider) computes the same arm and id
    other = decider().decide(p, "u1", None)
    assert other is not None and other.decision_id == first.decision_id


def test_status_reasons_serve_control_or_winner() -> None:
    """Draft/paused/rolled_back serve the control, completed the winner, none counted."""
    d = decider()
    for status, ended, winner, arm, reason in [
        ("draft", None, None, "a", "draft"),
        ("paused", None, None, "a", "paused"),
        ("completed", "completed", 1, "b", "completed"),
        ("rolled_back", "rolled_back", None, "a", "rolled_back"),
        ("archived", "completed", 1, "b", "completed"),
        ("archived", "rolled_back", None, "a", "rolled_back"),
    ]:
        cache = PolicyCache()
        cache.apply(policy_data(status=status, ended_status=ended, winner_index=winner))
        result = d.decide(cache.policies["exp"], "u", None)
        assert result is not None
        assert (result.arm, result.reason) == (arm, reason)
        ref = d.codec.decode(result.decision_id)
        assert ref is not None and not ref.counted


def test_excluded_units_get_the_control_and_are_not_counted() -> None:
    """Targeting misses and traffic_fraction exclusions serve the control uncounted."""
    d = decider()
    cache = PolicyCache()
    cache.apply(policy_data(targeting=[Rule("country", "eq", value="US")], traffic_fraction=0.5))
    p = cache.policies["exp"]
    miss = d.decide(p, "u", {"country": "FR"})
    assert miss is not None and (miss.arm, miss.reason) == ("a", "excluded")
    results = [d.decide(p, f"u{i}", {"country": "US"}) for i in range(4000)]
    excluded = sum(1 for r in results if r is not None and r.reason == "excluded")
    assert 1800 < excluded < 2200


def test_rollout_assignment_is_monotone_in_the_share() -> None:
    """As the candidate's share grows, units only move control → candidate."""
    d = decider()
    previous: dict[str, str] = {}
    for version, share in enumerate([0.01, 0.05, 0.25, 0.5, 1.0], start=1):
        cache = PolicyCache()
        cache.apply(policy_data(policy="rollout", version=version, weights=[1 - share, share]))
        p = cache.policies["exp"]
        now = {}
        for i in range(3000):
            r = d.decide(p, f"unit-{i}", None)
            assert r is not None
            now[f"unit-{i}"] = r.arm
        for unit, arm in previous.items():
            if arm == "b":
                assert now[unit] == "b", f"{unit} moved candidate → control at share {share}"
        candidates = sum(1 for a in now.values() if a == "b")
        assert abs(candidates / 3000 - share) < 0.03
        previous = now


def test_thompson_draws_follow_weights_and_report_propensity() -> None:
    """Non-sticky thompson draws per decision with the weights; propensity is the arm's weight."""
    d = decider()
    cache = PolicyCache()
    cache.apply(policy_data(policy="thompson", sticky=False, weights=[0.1, 0.9]))
    p = cache.policies["exp"]
    results = [d.decide(p, "same-unit", None) for _ in range(5000)]
    share_b = sum(1 for r in results if r is not None and r.arm == "b") / 5000
    assert abs(share_b - 0.9) < 0.02
    assert {(r.arm, r.propensity) for r in results if r is not None} == {("a", 0.1), ("b", 0.9)}
    assert len({r.decision_id for r in results if r is not None}) == 5000


def test_snapshot_ignores_older_versions_and_handles_removal() -> None:
    """apply() keeps the newest version; remove() drops the experiment."""
    cache = PolicyCache()
    assert cache.apply(policy_data(version=5, weights=[0.3, 0.7]))
    assert not cache.apply(policy_data(version=4, weights=[0.9, 0.1]))
    assert cache.policies["exp"].weights == (0.3, 0.7)
    assert cache.by_id[7].key == "exp"
    assert cache.remove("exp", 6)
    assert "exp" not in cache.policies and 7 not in cache.by_id


def test_decision_log_is_bounded() -> None:
    """Past its bound the log drops and counts instead of growing."""
    log = DecisionLog(max_events=3)
    for i in range(5):
        log.record(f"d{i}", 1, 0, 1, "u", True, "allocated", False)
    assert len(log) == 3 and log.dropped == 2
    batch = log.take(2)
    log.put_back(batch)
    assert [e[0] for e in log.take(10)] == ["d0", "d1", "d2"]
