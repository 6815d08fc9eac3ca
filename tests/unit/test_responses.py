"""``EncodedJSON``: the pre-encoded fast path, and Litestar's own path for what the fast path does not do."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.datastructures import Cookie, ResponseHeader
from litestar.testing import TestClient

from app.web.responses import EncodedJSON


@get("/fast", sync_to_thread=False)
def fast() -> EncodedJSON:
    return EncodedJSON(b'{"ok":true}', status_code=201, headers={"X-Extra": "1"})


@get("/route-headers", sync_to_thread=False, response_headers=[ResponseHeader(name="X-Route", value="r")])
def route_headers() -> EncodedJSON:
    return EncodedJSON(b'{"ok":true}')


@get("/route-cookies", sync_to_thread=False, response_cookies=[Cookie(key="c", value="v")])
def route_cookies() -> EncodedJSON:
    return EncodedJSON(b'{"ok":true}')


def test_fast_path_and_fallbacks() -> None:
    with TestClient(Litestar(route_handlers=[fast, route_headers, route_cookies])) as client:
        answer = client.get("/fast")
        assert answer.status_code == 201 and answer.json() == {"ok": True}
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["content-length"] == str(len(b'{"ok":true}'))
        assert answer.headers["x-extra"] == "1"
        assert client.get("/route-headers").headers["x-route"] == "r"  # handler headers kept (fallback)
        assert client.get("/route-cookies").cookies.get("c") == "v"  # handler cookies kept (fallback)
