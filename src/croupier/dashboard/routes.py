"""The dashboard: the `/ui` page and the one piece of data for it the admin API lacks.

The page (`static/`: HTML, JavaScript, CSS; no build step) needs no key to load. It asks for
an admin key once, keeps it in the tab's sessionStorage and sends it as a Bearer token to the
admin API it reads (`GET /v1/experiments`, `…/results`, `…/allocations`, `/v1/audit`) and to
`GET /v1/experiments/{key}/history` below: each comparison's always-valid p-value over time,
which `sequential_state` (a running minimum) cannot give.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.params import Parameter

from croupier.errors import NotFound
from croupier.model import ExperimentSpec
from croupier.storage.queries import Q
from croupier.web import require_scope

# the files under static/ that are served, with their content types; nothing else is
_ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # everything the page loads comes from this server; inline script is never needed
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


@cache
def _asset(name: str) -> bytes:
    """A static file's bytes, read from the package once."""
    return (resources.files("croupier.dashboard") / "static" / name).read_bytes()


def _serve(name: str) -> Response[bytes]:
    return Response(content=_asset(name), media_type=_ASSETS[name], headers=_HEADERS)


@get("/ui", include_in_schema=False, sync_to_thread=False)
def dashboard_page() -> Response[bytes]:
    """The dashboard page (no key needed; its data calls need an admin key)."""
    return _serve("index.html")


@get("/ui/{name:str}", include_in_schema=False, sync_to_thread=False)
def dashboard_asset(
    name: Annotated[str, Parameter(max_length=64, description="A file of the page.")],
) -> Response[bytes]:
    """One of the page's static files."""
    if name not in _ASSETS:
        raise NotFound(f"No dashboard file {name!r}; open the dashboard at /ui.")
    return _serve(name)


class HistoryPoint(msgspec.Struct, kw_only=True):
    """One recorded value of an always-valid p-value."""

    at: datetime
    p_value: float
    exposures: int


class SequentialSeries(msgspec.Struct, kw_only=True):
    """One comparison's always-valid p-value over time (non-increasing)."""

    metric: str
    kind: str
    arm: str
    vs: str
    points: list[HistoryPoint]


class HistoryOut(msgspec.Struct, kw_only=True):
    """`GET /v1/experiments/{key}/history`."""

    experiment: str
    alpha: float
    sequential: list[SequentialSeries]


_spec = msgspec.json.Decoder(ExperimentSpec)


@get(
    "/v1/experiments/{key:str}/history",
    guards=[require_scope("admin")],
    tags=["experiments"],
    summary="Sequential p-value history",
)
async def experiment_history(
    request: Request[Any, Any, Any],
    key: Annotated[str, Parameter(max_length=64, description="The experiment key.")],
) -> HistoryOut:
    """Each comparison's always-valid p-value over time, as recorded by the evaluations
    (`kind` is `two_sided` for the primary metric, `guardrail` for a guardrail). Points are
    kept when the value falls by 2 % or more, or at most once a minute while it falls less;
    the current value is the one in `GET …/results`."""
    pool = request.app.state.runtime.pool
    async with pool.acquire() as conn:
        row = await conn.fetchrow(Q["dashboard_experiment"], key)
        if row is None:
            raise NotFound(f"No experiment with key {key!r}; list them with GET /v1/experiments.")
        rows = await conn.fetch(Q["sequential_history"], row["id"])
    spec = _spec.decode(row["settings"])
    keys = [a.key for a in spec.arms]
    control = keys[spec.control_index]
    series: dict[tuple[str, str, int], SequentialSeries] = {}
    for r in rows:
        if r["arm_index"] >= len(keys):
            continue
        one = series.get((r["metric"], r["kind"], r["arm_index"]))
        if one is None:
            one = series[(r["metric"], r["kind"], r["arm_index"])] = SequentialSeries(
                metric=r["metric"], kind=r["kind"], arm=keys[r["arm_index"]], vs=control,
                points=[],
            )
        one.points.append(
            HistoryPoint(at=r["at"], p_value=r["p_value"], exposures=r["exposures"])
        )
    return HistoryOut(
        experiment=spec.key,
        alpha=1.0 - spec.confidence_level,
        sequential=list(series.values()),
    )


DASHBOARD_ROUTES = [dashboard_page, dashboard_asset, experiment_history]
"""Every route of the dashboard, registered by `create_app`."""
