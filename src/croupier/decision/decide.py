"""The decision itself: status, targeting, traffic fraction, assignment, stickiness.

Everything here is synchronous and in-process except the first sighting of a unit in a sticky
`thompson` experiment, which asks the shared sticky store (Redis) once per unit and process.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from croupier.decision.assign import pick, targeted, unit_hash, unit_nonce
from croupier.decision.exposure import DecisionLog
from croupier.decision.ids import DecisionIdCodec
from croupier.decision.policy_cache import Policy
from croupier.decision.schemas import DecideResponse

# (experiment_id, arm_index, propensity) -> the arm stored for the unit
StickyClaim = Callable[[Policy, str, int, float], Awaitable[tuple[int, float, bool] | None]]


class Decider:
    """Makes decisions against the current snapshot and logs them."""

    def __init__(
        self,
        *,
        codec: DecisionIdCodec,
        log: DecisionLog,
        sticky_cache_size: int,
        sticky_claim: StickyClaim | None = None,
    ) -> None:
        self.codec = codec
        self.log = log
        self.sticky_claim = sticky_claim
        self._sticky: OrderedDict[tuple[int, str], tuple[int, float]] = OrderedDict()
        self._sticky_max = sticky_cache_size
        # Seeded from os.urandom here, in the serving process (after any fork). It also makes
        # the nonces of non-sticky ids: they need to be unique, not secret (the id's MAC is
        # what cannot be forged), and drawing them here skips a getrandom system call per id.
        self._random = random.Random()
        self._nonce = self._random.randbytes

    def _remember(self, key: tuple[int, str], arm: int, propensity: float) -> None:
        self._sticky[key] = (arm, propensity)
        if len(self._sticky) > self._sticky_max:
            self._sticky.popitem(last=False)

    def _uncounted(self, policy: Policy, unit_id: str, arm: int, reason: str) -> DecideResponse:
        decision_id = self.codec.encode(policy.experiment_id, arm, False, self._nonce(8))
        self.log.record(
            decision_id,
            policy.experiment_id,
            arm,
            policy.allocation_id,
            unit_id,
            False,
            reason,
            policy.sticky,
        )
        return DecideResponse(
            decision_id,
            policy.key,
            policy.arm_keys[arm],
            policy.configs[arm],
            policy.weights[arm],
            reason,
        )

    def _counted(
        self, policy: Policy, unit_id: str, arm: int, propensity: float, *, sticky_repeat: bool
    ) -> DecideResponse:
        nonce = unit_nonce(policy.salt, unit_id, arm) if policy.sticky else self._nonce(8)
        decision_id = self.codec.encode(policy.experiment_id, arm, True, nonce)
        if sticky_repeat:
            reason = "sticky"
        else:
            reason = "allocated"
            self.log.record(
                decision_id,
                policy.experiment_id,
                arm,
                policy.allocation_id,
                unit_id,
                True,
                reason,
                policy.sticky,
            )
        return DecideResponse(
            decision_id, policy.key, policy.arm_keys[arm], policy.configs[arm], propensity, reason
        )

    def decide(
        self, policy: Policy, unit_id: str, context: Mapping[str, Any] | None
    ) -> DecideResponse | None:
        """The decision, or None when the async sticky path (`decide_async`) is needed."""
        if policy.serve_reason != "allocated":
            return self._uncounted(policy, unit_id, policy.serve_index, policy.serve_reason)
        if (policy.rules and not targeted(policy.rules, context)) or (
            policy.traffic_fraction < 1.0
            and unit_hash(policy.salt, unit_id, purpose=b"traffic") >= policy.traffic_fraction
        ):
            return self._uncounted(policy, unit_id, policy.control_index, "excluded")

        if policy.kind == "thompson" and not policy.sticky:
            arm = pick(policy.cum_weights, self._random.random())
            return self._counted(policy, unit_id, arm, policy.weights[arm], sticky_repeat=False)

        key = (policy.experiment_id, unit_id)
        if policy.kind == "thompson":  # sticky adaptive: first assignment wins, shared store
            known = self._sticky.get(key)
            if known is not None:
                self._sticky.move_to_end(key)
                return self._counted(policy, unit_id, known[0], known[1], sticky_repeat=True)
            if self.sticky_claim is not None:
                return None
            # no shared store: deterministic fallback on the current weights
            arm = pick(policy.cum_weights, unit_hash(policy.salt, unit_id))
            self._remember(key, arm, policy.weights[arm])
            return self._counted(policy, unit_id, arm, policy.weights[arm], sticky_repeat=False)

        u = unit_hash(policy.salt, unit_id)
        if policy.kind == "rollout":
            candidate = policy.candidate_index
            arm = candidate if u < policy.weights[candidate] else policy.control_index
        else:
            arm = pick(policy.cum_weights, u)
        if not policy.sticky:
            return self._counted(policy, unit_id, arm, policy.weights[arm], sticky_repeat=False)
        known = self._sticky.get(key)
        repeat = known is not None and known[0] == arm
        if not repeat:
            self._remember(key, arm, policy.weights[arm])
        return self._counted(policy, unit_id, arm, policy.weights[arm], sticky_repeat=repeat)

    async def decide_async(self, policy: Policy, unit_id: str) -> DecideResponse:
        """First sighting of a unit in a sticky thompson experiment: claim an arm in the store."""
        assert self.sticky_claim is not None
        arm = pick(policy.cum_weights, self._random.random())
        propensity = policy.weights[arm]
        claimed = await self.sticky_claim(policy, unit_id, arm, propensity)
        repeat = False
        if claimed is not None and claimed[0] < len(policy.arm_keys):
            arm, propensity, repeat = claimed
        self._remember((policy.experiment_id, unit_id), arm, propensity)
        return self._counted(policy, unit_id, arm, propensity, sticky_repeat=repeat)
