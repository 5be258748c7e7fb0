"""`POST /v1/stats/sample-size`: planning a test (SPEC §3).

Open to any API key (scope `decide` or `admin`): it reads no experiment data, and the
application teams that decide are the ones planning tests.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, post

from croupier.errors import Invalid, field_error
from croupier.stats.power import SampleSizeError, sample_size
from croupier.web import decode_json, require_scope

SAMPLE_SIZE_PATH = "/v1/stats/sample-size"


class SampleSizeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /v1/stats/sample-size`: give exactly one of `mde` (absolute) or
    `mde_relative` (a fraction of `baseline`); `std` is required for a continuous metric."""

    type: Literal["binary", "continuous"]
    baseline: float
    mde: float | None = None
    mde_relative: float | None = None
    std: float | None = None
    alpha: float = 0.05
    power: float = 0.8
    arms: int = 2


class SampleSizeOut(msgspec.Struct, kw_only=True):
    """Observations needed per arm, and in total (per_arm · arms)."""

    per_arm: int
    total: int


_decoder = msgspec.json.Decoder(SampleSizeRequest)
_EXAMPLE = '{"type": "binary", "baseline": 0.1, "mde_relative": 0.05}'

# request bodies decoded here (strictly); documented in /schema by app.py
STATS_REQUEST_BODIES: dict[tuple[str, str], Any] = {(SAMPLE_SIZE_PATH, "post"): SampleSizeRequest}


def _field_of(message: str, body: SampleSizeRequest) -> str:
    """The request field a SampleSizeError message is about."""
    effect = "mde_relative" if body.mde_relative is not None and body.mde is None else "mde"
    for name in ("mde_relative", "baseline + effect", "baseline", "mde", "std", "alpha", "power",
                 "arms", "type"):
        if message.startswith(name):
            return effect if name == "baseline + effect" else name
    return effect  # "Give exactly one of mde…", "The minimum detectable effect…", "too small"


@post(
    SAMPLE_SIZE_PATH,
    status_code=200,
    guards=[require_scope("admin")],  # SPEC §2 lists it among the admin routes
    tags=["statistics"],
    summary="Sample size for a two-sample test",
)
async def post_sample_size(request: Request[Any, Any, Any]) -> SampleSizeOut:
    """Per-arm and total sample size by the two-sample normal approximation (two-sided alpha)."""
    body = decode_json(await request.body(), _decoder, example=_EXAMPLE)
    try:
        result = sample_size(
            type=body.type,
            baseline=body.baseline,
            mde=body.mde,
            mde_relative=body.mde_relative,
            std=body.std,
            alpha=body.alpha,
            power=body.power,
            arms=body.arms,
        )
    except SampleSizeError as exc:
        message = str(exc)
        raise Invalid(
            f"Invalid sample-size request: {message}",
            extra=[field_error(_field_of(message, body), message)],
        ) from None
    return SampleSizeOut(per_arm=result.per_arm, total=result.total)
