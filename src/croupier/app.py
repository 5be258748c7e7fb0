"""`create_app(settings)`: routes, lifespan, error mapper and OpenAPI in one place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, get
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

from croupier import __version__
from croupier.admin.routes import REQUEST_BODIES, ExperimentController, audit_log
from croupier.admin.stats_routes import STATS_REQUEST_BODIES, post_sample_size
from croupier.dashboard.routes import DASHBOARD_ROUTES
from croupier.decision.routes import DECIDE_PATH, make_decide_route
from croupier.decision.schemas import DecideRequest, DecideResponse
from croupier.errors import error_to_response
from croupier.ingest.routes import post_rewards
from croupier.ingest.schemas import RewardBody
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
        ("/v1/rewards", "post"): RewardBody,
        (DECIDE_PATH, "post"): DecideRequest,
    }
    types = [*bodies.values(), DecideResponse]
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
    schema.paths[DECIDE_PATH] = PathItem(
        post=Operation(
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
        )
    )
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


def create_app(settings: Settings) -> Litestar:
    """Build the application for one server process."""
    runtime = Runtime(settings)
    decide_route = make_decide_route(runtime)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[
            decide_route, post_rewards, ExperimentController, audit_log, healthz, readyz,
            openapi_json, openapi_json_file, post_sample_size, metrics_endpoint,
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
