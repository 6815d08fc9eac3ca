"""The ceilings of the HTTP figures: a hello-world Litestar POST and GET on the same server settings.

The POST decodes the JSON body with msgspec and answers 201 with a small JSON object; the GET answers 200 with
an empty page; nothing else: no auth, no database. ``bench/bench.py`` serves it with Granian exactly as it
serves the API.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, get, post

_decoder = msgspec.json.Decoder(dict[str, Any])


@post("/api/v1/logs", status_code=201)
async def hello(request: Request[Any, Any, Any]) -> dict[str, str]:
    body = _decoder.decode(await request.body())
    return {"id": "00000000-0000-7000-8000-000000000000", "action": str(body.get("action"))}


@get("/api/v1/logs")
async def hello_get() -> dict[str, Any]:
    return {"data": [], "next_cursor": None}


def create_app() -> Litestar:
    return Litestar(route_handlers=[hello, hello_get])
