"""The lean routes (decide, rewards) dispatched before Litestar's router behave like any route:
path variants still reach them, wrong methods get 405, and an unexpected error is a JSON 500."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.helpers import auth, experiment_body


async def _running(client: AsyncTestClient[Any], keys: dict[str, str]) -> None:
    admin = auth(keys["admin"])
    r = await client.post("/v1/experiments", json=experiment_body(), headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/experiments/exp/start", headers=admin)
    assert r.status_code == 200, r.text


async def test_trailing_slash_reaches_the_same_routes(
    client: AsyncTestClient[Any], keys: dict[str, str]
) -> None:
    """`/v1/decide/` goes through Litestar's router to the same route as `/v1/decide`."""
    await _running(client, keys)
    decide = auth(keys["decide"])
    r = await client.post("/v1/decide/", json={"experiment": "exp", "unit_id": "u"}, headers=decide)
    assert r.status_code == 200, r.text
    decision = r.json()
    fast = await client.post(
        "/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=decide
    )
    assert fast.json()["arm"] == decision["arm"]  # fixed policy: same unit, same arm
    r = await client.post(
        "/v1/rewards/", json={"decision_id": decision["decision_id"], "value": 1}, headers=decide
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0}


@pytest.mark.parametrize("path", ["/v1/decide", "/v1/rewards"])
async def test_wrong_method_is_405_naming_post(
    client: AsyncTestClient[Any], keys: dict[str, str], path: str
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = await client.request(method, path, headers=auth(keys["decide"]))
        assert r.status_code == 405, r.text
        assert r.headers["allow"] == "POST"
        assert "use POST" in r.json()["detail"]


async def test_unexpected_error_is_a_json_500(
    client: AsyncTestClient[Any], keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside a lean route answers the same JSON error body as any route, not a
    dropped connection, and the next request is served normally."""
    await _running(client, keys)
    runtime = client.app.state.runtime

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime.decider, "decide", broken)
    decide = auth(keys["decide"])
    r = await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=decide)
    assert r.status_code == 500
    assert r.json() == {
        "status_code": 500,
        "detail": "Internal server error; the incident was logged.",
    }
    monkeypatch.undo()
    r = await client.post("/v1/decide", json={"experiment": "exp", "unit_id": "u"}, headers=decide)
    assert r.status_code == 200, r.text
