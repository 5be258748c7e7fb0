"""Admin API: create/list/get/patch/delete, lifecycle, allocation history, audit."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body


async def test_create_defaults_and_read_back(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """A created experiment is a draft with equal weights and documented defaults."""
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(arms=4), headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "draft" and body["sticky"] is True
    assert body["weights"] == {f"arm{i}": 0.25 for i in range(4)}
    assert body["min_exposures_per_arm"] == 100 and body["confidence_level"] == 0.95
    got = (await client.get("/v1/experiments/exp", headers=h)).json()
    assert got == body
    listed = (await client.get("/v1/experiments", headers=h)).json()
    assert [e["key"] for e in listed] == ["exp"]
    assert (await client.get("/v1/experiments?status=running", headers=h)).json() == []


async def test_thompson_is_not_sticky_by_default_and_rollout_follows_stages(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """thompson defaults to non-sticky; a rollout's candidate starts at the first stage share."""
    h = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body("t", "thompson"), headers=h)
    assert r.json()["sticky"] is False
    r = await client.post("/v1/experiments", json=experiment_body("r", "rollout"), headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["weights"] == {"arm0": 0.99, "arm1": 0.01}
    assert [s["share"] for s in body["stages"]] == [0.01, 0.05, 0.25, 0.5, 1.0]
    assert body["stage"] == 0


async def test_duplicate_key_conflicts(client: AsyncTestClient[Any], keys: dict[str, str]) -> None:
    """Creating the same key twice is a 409."""
    h = auth(keys["admin"])
    assert (
        await client.post("/v1/experiments", json=experiment_body(), headers=h)
    ).status_code == 201
    r = await client.post("/v1/experiments", json=experiment_body(), headers=h)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


async def test_lifecycle_and_illegal_transitions(
    client: AsyncTestClient[Any], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    """Legal transitions move the status; an illegal one is a 409 naming both states."""
    h = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=h)
    r = await client.post("/v1/experiments/exp/pause", headers=h)
    assert r.status_code == 409
    assert "draft" in r.json()["detail"] and "paused" in r.json()["detail"]
    for action, status in [("start", "running"), ("pause", "paused"), ("resume", "running")]:
        r = await client.post(f"/v1/experiments/exp/{action}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
    r = await client.post("/v1/experiments/exp/stop", json={"winner": "arm1"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert r.json()["winner"] == "arm1" and r.json()["weights"] == {"arm0": 0.0, "arm1": 1.0}
    r = await client.post("/v1/experiments/exp/start", headers=h)
    assert (
        r.status_code == 409
        and "completed" in r.json()["detail"]
        and "running" in r.json()["detail"]
    )
    r = await client.post("/v1/experiments/exp/archive", headers=h)
    assert r.json()["status"] == "archived"
    history = (await client.get("/v1/experiments/exp/allocations", headers=h)).json()
    assert [a["reason"] for a in history] == ["created", "stop: serving arm1 to everyone"]
    assert history[-1]["weights"] == {"arm0": 0.0, "arm1": 1.0}
    audit = (await client.get("/v1/audit?experiment=exp", headers=h)).json()
    assert [a["action"] for a in audit] == ["archive", "stop", "resume", "pause", "start", "create"]
    assert all(a["actor"].startswith("key:") for a in audit)


async def test_stop_with_unknown_winner_writes_nothing(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """An unknown winner is a 422 and the experiment keeps running."""
    h = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=h)
    await client.post("/v1/experiments/exp/start", headers=h)
    r = await client.post("/v1/experiments/exp/stop", json={"winner": "nope"}, headers=h)
    assert r.status_code == 422
    assert (await client.get("/v1/experiments/exp", headers=h)).json()["status"] == "running"


async def test_rollback_serves_control(client: AsyncTestClient[Any], keys: dict[str, str]) -> None:
    """Rollback ends the experiment and puts all weight on the control."""
    h = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=h)
    await client.post("/v1/experiments/exp/start", headers=h)
    r = await client.post("/v1/experiments/exp/rollback", headers=h)
    assert r.json()["status"] == "rolled_back" and r.json()["weights"] == {"arm0": 1.0, "arm1": 0.0}


async def test_patch_definition_only_in_draft(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """Arms can be redefined in draft; afterwards only descriptive/threshold fields change."""
    h = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=h)
    new_arms = experiment_body(arms=3)["arms"]
    r = await client.patch("/v1/experiments/exp", json={"arms": new_arms}, headers=h)
    assert r.status_code == 200, r.text
    assert len(r.json()["weights"]) == 3
    await client.post("/v1/experiments/exp/start", headers=h)
    r = await client.patch(
        "/v1/experiments/exp", json={"arms": experiment_body()["arms"]}, headers=h
    )
    assert (
        r.status_code == 409 and "draft" in r.json()["detail"] and "running" in r.json()["detail"]
    )
    r = await client.patch(
        "/v1/experiments/exp", json={"name": "Greeting test", "max_exposures": 5000}, headers=h
    )
    assert r.status_code == 200 and r.json()["name"] == "Greeting test"
    assert r.json()["max_exposures"] == 5000


async def test_delete_rules(client: AsyncTestClient[Any], keys: dict[str, str]) -> None:
    """A running experiment cannot be deleted; a draft can, and then it is gone."""
    h = auth(keys["admin"])
    await client.post("/v1/experiments", json=experiment_body(), headers=h)
    await client.post("/v1/experiments", json=experiment_body("other"), headers=h)
    await client.post("/v1/experiments/other/start", headers=h)
    r = await client.delete("/v1/experiments/other", headers=h)
    assert r.status_code == 409 and "running" in r.json()["detail"]
    assert (await client.delete("/v1/experiments/exp", headers=h)).status_code == 204
    assert (await client.get("/v1/experiments/exp", headers=h)).status_code == 404
    r = await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=h)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key": "Upper"}, "key"),
        ({"key": "x" * 65}, "key"),
        ({"arms": [{"key": "a", "control": True}]}, "arms"),
        ({"arms": [{"key": f"a{i}", "control": i == 0} for i in range(33)]}, "arms"),
        ({"arms": [{"key": "a", "control": True}, {"key": "a"}]}, "arms[1].key"),
        ({"arms": [{"key": "a"}, {"key": "b"}]}, "arms"),
        ({"arms": [{"key": "a", "control": True}, {"key": "b", "control": True}]}, "arms"),
        (
            {"arms": [{"key": "a", "control": True, "weight": 0.5}, {"key": "b", "weight": 0.4}]},
            "arms",
        ),
        ({"arms": [{"key": "a", "control": True, "weight": 0.5}, {"key": "b"}]}, "arms"),
        (
            {"arms": [{"key": "a", "control": True, "weight": 1.5}, {"key": "b", "weight": -0.5}]},
            "arms[0].weight",
        ),
        (
            {"arms": [{"key": "a", "control": True, "config": {"p": "x" * 17000}}, {"key": "b"}]},
            "arms[0].config",
        ),
        (
            {"metrics": [{"name": "latency", "type": "continuous", "direction": "minimize"}]},
            "metrics",
        ),
        (
            {
                "metrics": [
                    {
                        "name": "reward",
                        "type": "binary",
                        "direction": "maximize",
                        "max_degradation": 0.1,
                    }
                ]
            },
            "metrics[0]",
        ),
        (
            {
                "metrics": [
                    {"name": "reward", "type": "binary"},
                    {
                        "name": "err",
                        "type": "binary",
                        "direction": "minimize",
                        "max_degradation": 0.1,
                        "max_relative_degradation": 0.1,
                    },
                ]
            },
            "metrics[1]",
        ),
        (
            {
                "metrics": [
                    {"name": "reward", "type": "binary"},
                    {"name": "reward", "type": "binary"},
                ]
            },
            "metrics",
        ),
        ({"traffic_fraction": 1.5}, "traffic_fraction"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"min_arm_weight": 0.6}, "min_arm_weight"),
        (
            {"targeting": [{"attribute": "country", "op": "in", "value": "US"}]},
            "targeting[0].values",
        ),
        ({"targeting": [{"attribute": "age", "op": "gt", "value": [1]}]}, "targeting[0].value"),
        ({"stages": [{"share": 0.5}, {"share": 1.0}]}, "stages"),
        (
            {
                "policy": "rollout",
                "arms": [{"key": "a", "control": True}, {"key": "b"}, {"key": "c"}],
            },
            "arms",
        ),
        (
            {"policy": "rollout", "stages": [{"share": 0.5}, {"share": 0.2}, {"share": 1.0}]},
            "stages[1].share",
        ),
        ({"policy": "rollout", "stages": [{"share": 0.1}, {"share": 0.5}]}, "stages"),
        ({"alerts_url": "ftp://x"}, "alerts_url"),
        ({"max_exposures": 0}, "max_exposures"),
    ],
)
async def test_create_validation(
    client: AsyncTestClient[Any],
    keys: dict[str, str],
    db: asyncpg.Connection,
    change: dict[str, Any],
    field: str,
) -> None:
    """Each invalid definition is a 422 naming the field, and nothing is stored."""
    body = experiment_body()
    body.update(change)
    r = await client.post("/v1/experiments", json=body, headers=auth(keys["admin"]))
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["detail"] and payload["status_code"] == 422
    assert field in [e["field"] for e in payload["extra"]], payload
    assert await db.fetchval("SELECT count(*) FROM experiments") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0
