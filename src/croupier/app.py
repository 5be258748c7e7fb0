"""`create_app(settings)`: routes, lifespan, error mapper and OpenAPI in one place."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, asgi, get
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPIResponse,
    Operation,
    PathItem,
    RequestBody,
    SecurityScheme,
)
from litestar.openapi.spec import (
    OpenAPIMediaType as OAMediaType,
)
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from croupier import __version__
from croupier.admin.routes import REQUEST_BODIES, ExperimentController, audit_log
from croupier.admin.stats_routes import STATS_REQUEST_BODIES, post_sample_size
from croupier.dashboard.routes import DASHBOARD_ROUTES
from croupier.decision.routes import DECIDE_PATH, make_decide_route
from croupier.decision.schemas import DecideRequest, DecideResponse
from croupier.errors import error_to_response
from croupier.ingest.routes import REWARDS_PATH, make_rewards_route
from croupier.ingest.schemas import RewardBody, RewardsAccepted
from croupier.lean import LeanRoute
from croupier.metrics import metrics_endpoint
from croupier.runtime import Runtime
from croupier.settings import Settings

logger = logging.getLogger("croupier.app")


class Health(msgspec.Struct):
    """Liveness."""

    status: str


class Readiness(msgspec.Struct):
    """Readiness: PostgreSQL and Redis separately; degraded still serves decisions."""

    status: str
    postgres: str
    redis: str
    experiments: int
    snapshot_age_s: float
    decision_buffer: int
    decisions_dropped: int


@get("/healthz", tags=["operations"], summary="Liveness")
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@get("/readyz", tags=["operations"], summary="Readiness")
async def readyz(request: Request[Any, Any, Any]) -> Readiness:
    """Ready once the snapshot is loaded; reports each dependency."""
    rt: Runtime = request.app.state.runtime
    try:
        async with asyncio.timeout(1.0):
            await rt.pool.fetchval("SELECT 1")
        pg = "ok"
    except Exception as exc:
        pg = f"unavailable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(0.5):
            await rt.redis.ping()
        redis = "ok"
    except Exception as exc:
        redis = f"unavailable: {type(exc).__name__}"
    return Readiness(
        status="ready" if pg == "ok" and redis == "ok" else "degraded",
        postgres=pg,
        redis=redis,
        experiments=len(rt.cache.policies),
        snapshot_age_s=round(time.monotonic() - rt.feed.last_sync_monotonic, 3),
        decision_buffer=len(rt.log),
        decisions_dropped=rt.log.dropped,
    )


def _document_bodies(app: Litestar) -> None:
    """Describe in the OpenAPI document the bodies our lean routes decode themselves."""
    schema = app.openapi_schema
    bodies: dict[tuple[str, str], Any] = {
        **REQUEST_BODIES,
        **STATS_REQUEST_BODIES,
        (REWARDS_PATH, "post"): RewardBody,
        (DECIDE_PATH, "post"): DecideRequest,
    }
    types = [*bodies.values(), DecideResponse, RewardsAccepted]
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(types, refs, strict=True))
    if schema.components is None:
        schema.components = Components()
    if schema.components.schemas is None:
        schema.components.schemas = {}
    schema.components.schemas.update(components)
    if schema.paths is None:
        schema.paths = {}
    error = OpenAPIResponse(
        description="Error: `status_code`, `detail` and, for validation, `extra`"
    )
    # the lean routes are not Litestar handlers: their operations are written out here
    lean_operations = {
        DECIDE_PATH: Operation(
            tags=["decisions"],
            summary="Decide which arm a unit gets",
            description="The hot path: answered from the in-process policy snapshot.",
            operation_id="Decide",
            responses={
                "200": OpenAPIResponse(
                    description="The decision",
                    content={"application/json": OAMediaType(schema=ref_of[DecideResponse])},
                ),
                **{code: error for code in ("400", "401", "403", "404", "405", "413", "422")},
            },
        ),
        REWARDS_PATH: Operation(
            tags=["rewards"],
            summary="Report rewards",
            description=(
                "One reward or a list of up to 1000. Answered 202 only after the rewards are "
                "committed. At most one value per (decision_id, metric): the same value again "
                "is a duplicate, a different value is refused with 409. One bad item rejects "
                "the whole list."
            ),
            operation_id="V1RewardsPostRewards",
            responses={
                "202": OpenAPIResponse(
                    description="Committed: newly written items and identical repeats",
                    content={"application/json": OAMediaType(schema=ref_of[RewardsAccepted])},
                ),
                **{
                    code: error for code in ("400", "401", "403", "405", "409", "413", "422", "503")
                },
            },
        ),
    }
    for path, lean in lean_operations.items():
        schema.paths[path] = PathItem(post=lean)
    for (path, method), body_type in bodies.items():
        item = schema.paths.get(path)
        operation = getattr(item, method, None) if item is not None else None
        if operation is None:
            raise RuntimeError(f"no {method.upper()} {path} to document")
        operation.request_body = RequestBody(
            content={"application/json": OAMediaType(schema=ref_of[body_type])},
            required=path != "/v1/experiments/{key}/stop",
        )
        responses = operation.responses or {}
        for code in ("400", "401", "403", "413", "422"):
            responses.setdefault(code, error)
        operation.responses = responses


@get("/schema", tags=["operations"], summary="OpenAPI document", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document (also at /schema/openapi.json; rendered docs at /docs)."""
    return request.app.openapi_schema.to_schema()


@get("/schema/openapi.json", include_in_schema=False)
async def openapi_json_file(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI document under its conventional file name."""
    return request.app.openapi_schema.to_schema()


class CroupierApp(Litestar):
    """The Litestar app, with the lean routes (decide, rewards) dispatched before Litestar's
    router and middleware: an exact path match goes straight to its route (see croupier.lean)."""

    def __init__(self, lean_routes: dict[str, LeanRoute], **config: Any) -> None:
        super().__init__(**config)
        self.lean_routes = lean_routes

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == ScopeType.HTTP:
            route = self.lean_routes.get(scope["path"])  # type: ignore[typeddict-item]
            if route is not None:
                await route(scope, receive, send)  # type: ignore[arg-type]
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Litestar:
    """Build the application for one server process."""
    runtime = Runtime(settings)
    lean_routes: dict[str, LeanRoute] = {
        DECIDE_PATH: make_decide_route(runtime),
        REWARDS_PATH: make_rewards_route(runtime, max_body_bytes=settings.max_body_bytes),
    }

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        # Everything made so far (modules, the app, the snapshot) lives as long as the process:
        # move it out of the cyclic collector's reach, so that full collections scan only what
        # was made since. Without this, each full collection of a worker paused the event loop
        # for 45-56 ms under decide load; with it, 2-5 ms (benchmarks/README.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await runtime.stop()
            gc.unfreeze()  # collectable again (matters where one process builds many apps)

    app = CroupierApp(
        lean_routes,
        route_handlers=[
            # Litestar routes to the lean routes too, e.g. for a trailing slash
            *(asgi(path, copy_scope=False)(route) for path, route in lean_routes.items()),
            ExperimentController,
            audit_log,
            healthz,
            readyz,
            openapi_json,
            openapi_json_file,
            post_sample_size,
            metrics_endpoint,
            *DASHBOARD_ROUTES,
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: error_to_response},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Croupier",
            version=__version__,
            description="Async multi-armed-bandit and experimentation server.",
            path="/docs",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
    app.state.runtime = runtime
    app.state.settings = settings
    _document_bodies(app)
    return app


def create_app_from_env() -> Litestar:
    """Factory for server workers: settings from `CROUPIER_*` variables."""
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return create_app(settings)
