"""Self-describing, tamper-evident decision ids.

A decision id carries what reward ingestion needs — experiment id, arm index, whether the
decision counted as an exposure — plus a nonce, signed with the installation's secret (HMAC-
SHA256, truncated to 72 bits). A reward can therefore be attributed by any server process the
moment its decision was made, without waiting for the decision row to be written, and a
forged or mangled id is recognised without a database lookup.

Layout (24 bytes, base64url without padding = 32 characters):
    version:1 | experiment_id:4 | arm_index:1 | flags:1 | nonce:8 | mac:9
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from typing import NamedTuple

VERSION = 1
_PAYLOAD = struct.Struct(">BIBB8s")
_MAC_BYTES = 9
ID_LENGTH = 32
FLAG_COUNTED = 1


class DecisionRef(NamedTuple):
    """What a decision id says about its decision."""

    experiment_id: int
    arm_index: int
    counted: bool


class DecisionIdCodec:
    """Encodes and verifies decision ids with one secret."""

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the decision-id secret must be at least 16 bytes")
        # keyed once; each id copies it (cheaper than keying HMAC-SHA256 anew per id)
        self._mac = hmac.new(secret, digestmod="sha256")

    def _sign(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()[:_MAC_BYTES]

    def encode(self, experiment_id: int, arm_index: int, counted: bool, nonce: bytes) -> str:
        """A signed id; `nonce` is 8 bytes (random, or derived from the unit for sticky ids)."""
        payload = _PAYLOAD.pack(
            VERSION, experiment_id, arm_index, FLAG_COUNTED if counted else 0, nonce
        )
        return base64.urlsafe_b64encode(payload + self._sign(payload)).decode("ascii")

    def decode(self, decision_id: str) -> DecisionRef | None:
        """The decision's reference, or None if the id is malformed or not signed by us."""
        if len(decision_id) != ID_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(decision_id.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(raw) != _PAYLOAD.size + _MAC_BYTES:
            return None
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._sign(payload)):
            return None
        version, experiment_id, arm_index, flags, _nonce = _PAYLOAD.unpack(payload)
        if version != VERSION:
            return None
        return DecisionRef(experiment_id, arm_index, bool(flags & FLAG_COUNTED))
