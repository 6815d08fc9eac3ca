"""Authentication middleware: credentials in, ``scope["user"]`` out.

No credentials leaves the caller anonymous (the route's guard answers 401). Bad credentials answer 401
here, before any handler runs, and count against the client address (``app.auth.failures``): an address
over its budget of failed authentications gets 429 with ``Retry-After`` before its credentials are looked at.
WebSockets may carry the token in ``?token=``; a bad one there is left to
the socket handler, which closes with 1008 as the contract says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from app.auth.authenticator import InvalidCredentials

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

__all__ = ["AuthMiddleware", "client_address", "credential_from_scope"]

_UNAUTHORIZED = msgspec.json.encode(
    {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "invalid or expired credentials"}
)


async def _send_429(send: Send, retry_after: int) -> None:
    body = msgspec.json.encode(
        {
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "detail": f"too many failed authentications from this address; retry in {retry_after} s",
        }
    )
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"retry-after", str(retry_after).encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


async def _send_401(send: Send) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 401,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"www-authenticate", b'Bearer error="invalid_token"'),
            (b"content-length", str(len(_UNAUTHORIZED)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": _UNAUTHORIZED, "more_body": False})


def credential_from_scope(scope: Scope) -> str | None:
    auth = api_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""  # present but not a bearer credential: refused
    if api_key:
        return api_key
    if scope["type"] == ScopeType.WEBSOCKET:
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if qs.get("token"):
            return qs["token"][0]
    return None


class AuthMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        credential = credential_from_scope(scope)
        if credential is not None:
            authenticator = scope["litestar_app"].state.runtime.authenticator
            source = client_address(scope)
            retry_after = authenticator.failures.retry_after(source)
            if retry_after and scope["type"] == ScopeType.HTTP:
                await _send_429(send, retry_after)
                return
            try:
                scope["user"] = await authenticator.authenticate(credential) if credential else None
                if not credential:
                    raise InvalidCredentials("not a bearer credential")
            except InvalidCredentials:
                authenticator.failures.record(source)
                if scope["type"] == ScopeType.WEBSOCKET:
                    scope["auth_error"] = True  # type: ignore[typeddict-unknown-key]
                else:
                    await _send_401(send)
                    return
        await next_app(scope, receive, send)
