"""Admin routes (scope `admin`): experiments, lifecycle, allocations, results, audit."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Parameter

from croupier.admin.schemas import (
    AllocationOut,
    AuditOut,
    ExperimentCreate,
    ExperimentOut,
    ExperimentPatch,
    ResultsOut,
    StopRequest,
)
from croupier.admin.service import ExperimentService
from croupier.optimizer.evaluate import evaluate, results_out
from croupier.web import actor_of, decode_json, require_scope

_create = msgspec.json.Decoder(ExperimentCreate)
_patch = msgspec.json.Decoder(ExperimentPatch)
_stop = msgspec.json.Decoder(StopRequest)
_CREATE_EXAMPLE = (
    '{"key": "my-exp", "policy": "thompson", "arms": [{"key": "a", "control": true}, {"key": "b"}]}'
)

# request bodies these routes decode themselves (strictly); documented in /schema by app.py
REQUEST_BODIES: dict[tuple[str, str], Any] = {
    ("/v1/experiments", "post"): ExperimentCreate,
    ("/v1/experiments/{key}", "patch"): ExperimentPatch,
    ("/v1/experiments/{key}/stop", "post"): StopRequest,
}


def _service(request: Request[Any, Any, Any]) -> ExperimentService:
    return request.app.state.runtime.experiments  # type: ignore[no-any-return]


KeyPath = Annotated[str, Parameter(max_length=64, description="The experiment key.")]


class ExperimentController(Controller):
    """Experiments and their lifecycle."""

    path = "/v1/experiments"
    guards = [require_scope("admin")]
    tags = ["experiments"]

    @post("/", status_code=201, summary="Create an experiment (status draft)")
    async def create(self, request: Request[Any, Any, Any]) -> ExperimentOut:
        """Create a draft experiment."""
        data = decode_json(await request.body(), _create, example=_CREATE_EXAMPLE)
        return await _service(request).create(data, actor_of(request))

    @get("/", summary="List experiments")
    async def list_experiments(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> list[ExperimentOut]:
        """All experiments, optionally filtered by status."""
        return await _service(request).list_experiments(status)

    @get("/{key:str}", summary="Get an experiment")
    async def get_one(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """One experiment."""
        return await _service(request).get(key)

    @patch("/{key:str}", summary="Update an experiment")
    async def update(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Change fields; arms, metrics, policy, sticky and stages only in draft."""
        data = decode_json(await request.body(), _patch, example='{"name": "new name"}')
        return await _service(request).patch(key, data, actor_of(request))

    @delete("/{key:str}", status_code=204, summary="Delete an experiment")
    async def remove(self, request: Request[Any, Any, Any], key: KeyPath) -> None:
        """Delete an experiment that is not running or paused."""
        await _service(request).delete(key, actor_of(request))

    @post("/{key:str}/start", status_code=200, summary="draft → running")
    async def start(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Start serving and counting."""
        return await _service(request).transition(key, "start", actor_of(request))

    @post("/{key:str}/pause", status_code=200, summary="running → paused")
    async def pause(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Serve the control to everyone, count nothing."""
        return await _service(request).transition(key, "pause", actor_of(request))

    @post("/{key:str}/resume", status_code=200, summary="paused → running")
    async def resume(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Resume allocation."""
        return await _service(request).transition(key, "resume", actor_of(request))

    @post("/{key:str}/stop", status_code=200, summary="running|paused → completed")
    async def stop(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Stop and serve the winner (or the control) to everyone."""
        body = await request.body()
        winner = None
        if body.strip():
            winner = decode_json(body, _stop, example='{"winner": "<arm key>"}').winner
        return await _service(request).transition(key, "stop", actor_of(request), winner=winner)

    @post("/{key:str}/rollback", status_code=200, summary="running|paused → rolled_back")
    async def rollback(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Stop and serve the control to everyone."""
        return await _service(request).transition(key, "rollback", actor_of(request))

    @post("/{key:str}/archive", status_code=200, summary="completed|rolled_back → archived")
    async def archive(self, request: Request[Any, Any, Any], key: KeyPath) -> ExperimentOut:
        """Archive an ended experiment (it keeps serving its final arm)."""
        return await _service(request).transition(key, "archive", actor_of(request))

    @get("/{key:str}/allocations", summary="Allocation history")
    async def allocations(
        self, request: Request[Any, Any, Any], key: KeyPath
    ) -> list[AllocationOut]:
        """Every change of weights, oldest first."""
        return await _service(request).allocations(key)

    @get("/{key:str}/results", summary="Results")
    async def results(self, request: Request[Any, Any, Any], key: KeyPath) -> ResultsOut:
        """Per-arm statistics, comparisons, guardrails, SRM and the recommendation."""
        return results_out(await evaluate(request.app.state.runtime.pool, key))


@get("/v1/audit", guards=[require_scope("admin")], tags=["audit"], summary="Audit log")
async def audit_log(
    request: Request[Any, Any, Any],
    experiment: Annotated[str | None, Parameter(max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000,
) -> list[AuditOut]:
    """Who or what changed what, when (newest first)."""
    return await _service(request).audit_log(experiment, limit)
