"""Responses whose JSON body is already encoded, sent as two ASGI messages with nothing recomputed.

The event routes (reads and writes, the hot paths) encode their body once with msgspec. Litestar's
``Response`` would then rebuild its header mapping, chain cookies, pick a serializer and build an
``ASGIResponse`` for every request; :class:`EncodedJSON` skips that and hands the server the status, the
three or four headers and the bytes. Anything it does not handle itself (cookies, background tasks,
headers declared on the route handler, a HEAD request) falls back to Litestar's own path, so it never
silently drops a feature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from litestar import Response

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["EncodedJSON"]

_JSON = b"application/json"


class _Send:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class EncodedJSON(Response[bytes]):
    """``application/json`` bytes with a status (and optional extra headers), answered as they are."""

    def __init__(self, body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content=body, status_code=status_code, media_type="application/json", headers=headers)

    def to_asgi_response(  # type: ignore[override]
        self,
        app: Any,
        request: Any,
        *,
        background: Any = None,
        cookies: Iterable[Any] | None = None,
        is_head_response: bool = False,
        **kwargs: Any,
    ) -> ASGIApp:
        handler_headers = kwargs.get("headers") or kwargs.get("encoded_headers")
        if self.cookies or cookies or self.background or background or is_head_response or handler_headers:
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookies,
                is_head_response=is_head_response,
                **kwargs,
            )
        body: bytes = self.content
        headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
        headers.extend((k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in self.headers.items())
        return _Send(self.status_code or 200, headers, body)
