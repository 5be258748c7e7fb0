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
    OpenAPIMediaType as OAMediaType,
    OpenAPIResponse,
    Operation,
    PathItem,
    RequestBody,
    Schema,
    SecurityScheme,
)

from croupier import __version__
from croupier.admin.routes import ExperimentController, audit_log
from croupier.decision.routes import DECIDE_PATH, make_decide_route
from croupier.errors import error_to_response
from croupier.ingest.routes import post_rewards
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


def _decide_openapi() -> PathItem:
    """The decide route is a lean ASGI handler; describe it for /schema by hand."""
    request_schema = Schema(
        type="object",  # type: ignore[arg-type]
        required=["experiment", "unit_id"],
        properties={
            "experiment": Schema(type="string", max_length=64),  # type: ignore[arg-type]
            "unit_id": Schema(type="string", min_length=1, max_length=256),  # type: ignore[arg-type]
            "context": Schema(type="object", max_properties=64),  # type: ignore[arg-type]
        },
        additional_properties=False,
    )
    response_schema = Schema(
        type="object",  # type: ignore[arg-type]
        required=["decision_id", "experiment", "arm", "config", "propensity", "reason"],
        properties={
            "decision_id": Schema(type="string"),  # type: ignore[arg-type]
            "experiment": Schema(type="string"),  # type: ignore[arg-type]
            "arm": Schema(type="string"),  # type: ignore[arg-type]
            "config": Schema(type="object"),  # type: ignore[arg-type]
            "propensity": Schema(type="number"),  # type: ignore[arg-type]
            "reason": Schema(
                type="string",  # type: ignore[arg-type]
                enum=["allocated", "sticky", "excluded", "paused", "completed", "rolled_back", "draft"],
            ),
        },
    )
    error = OpenAPIResponse(description="Error with `detail` (and `extra` for validation errors)")
    return PathItem(
        post=Operation(
            tags=["decisions"],
            summary="Decide which arm a unit gets",
            description="The hot path: answered from the in-process snapshot.",
            operation_id="Decide",
            security=[{"bearer": []}],
            request_body=RequestBody(
                content={"application/json": OAMediaType(schema=request_schema)}, required=True
            ),
            responses={
                "200": OpenAPIResponse(
                    description="The decision",
                    content={"application/json": OAMediaType(schema=response_schema)},
                ),
                "400": error, "401": error, "403": error, "404": error, "413": error, "422": error,
            },
        )
    )


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
        route_handlers=[decide_route, post_rewards, ExperimentController, audit_log, healthz, readyz],
        lifespan=[lifespan],
        exception_handlers={Exception: error_to_response},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Croupier",
            version=__version__,
            description="Async multi-armed-bandit and experimentation server.",
            path="/schema",
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
    schema = app.openapi_schema
    if schema.paths is not None:
        schema.paths[DECIDE_PATH] = _decide_openapi()
    return app


def create_app_from_env() -> Litestar:
    """Factory for server workers: settings from `CROUPIER_*` variables."""
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return create_app(settings)
