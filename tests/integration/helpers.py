"""Small helpers shared by the integration tests."""

from __future__ import annotations

from typing import Any


def auth(key: str) -> dict[str, str]:
    """Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}


def experiment_body(
    key: str = "exp", policy: str = "fixed", arms: int = 2, **more: Any
) -> dict[str, Any]:
    """A valid create body with `arms` arms, the first the control."""
    body: dict[str, Any] = {
        "key": key,
        "policy": policy,
        "arms": [
            {"key": f"arm{i}", "config": {"prompt": f"variant {i}"}, "control": i == 0}
            for i in range(arms)
        ],
        "metrics": [{"name": "reward", "type": "binary", "direction": "maximize"}],
    }
    body.update(more)
    return body
