"""The baseline of the decide benchmark: a bare Litestar app with one small JSON endpoint.

Served by the same ASGI server, worker count and CPU pinning as Croupier, so that
`decide req/s ÷ ping req/s` measures what Croupier's decision path costs on top of
"Litestar + the server + HTTP + wrk" on this machine, whatever the machine.
"""

from __future__ import annotations

from litestar import Litestar, get


@get("/ping")
async def ping() -> dict[str, str]:
    """A small JSON dict, like the smallest possible API answer."""
    return {"status": "ok"}


app = Litestar(route_handlers=[ping], debug=False)
