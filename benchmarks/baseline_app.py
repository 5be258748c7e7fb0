"""The baseline of the decide benchmark: a bare Litestar app with one small JSON endpoint.

Served by the same ASGI server, worker count and CPU pinning as Croupier, so that
`decide req/s ÷ ping req/s` measures what Croupier's decision path costs on top of
"Litestar + the server + HTTP + wrk" on this machine, whatever the machine.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post


@get("/ping")
async def ping() -> dict[str, str]:
    """A small JSON dict, like the smallest possible API answer."""
    return {"status": "ok"}


@post("/echo", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A secondary baseline: read a POST body (the decide body) and answer a small JSON dict.

    Separates the cost of receiving a request body from what Croupier does with it.
    """
    body = await request.body()
    return {"status": "ok", "bytes": len(body)}


app = Litestar(route_handlers=[ping, echo], debug=False)
