"""The basic flow: create, start, decide, reward, results."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body


async def test_create_start_decide_reward_results(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """A decision made right after start can be rewarded and shows up in results."""
    admin, decide = auth(keys["admin"]), auth(keys["decide"])
    r = await client.post("/v1/experiments", json=experiment_body(), headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/experiments/exp/start", headers=admin)
    assert r.status_code == 200, r.text
    r = await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u1"}, headers=decide)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["reason"] == "allocated"
    r = await client.post(
        "/v1/rewards", json={"decision_id": d["decision_id"], "value": 1}, headers=decide
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0}
