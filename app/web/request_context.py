"""The request id and the access log, around everything the app answers.

It wraps Litestar's whole ASGI handler (``install_request_context``), not the route middleware stack:
Litestar runs route middleware only for a matched route, so a router-level 404 or 405 would otherwise
leave without an ``X-Request-ID`` and without an access-log line.

A request id comes from ``X-Request-ID`` when the client sends a sane one, otherwise it is generated; it
is echoed in the response header, put in ``scope["state"]`` (problem bodies and audit events read it
there) and in ``request_id_var`` for the request's whole life, so every log line the request causes
carries it, the traceback of a 500 included. When the response is done, one ``auditlog.access`` line
records method, path, status, duration, tenant, request id and client (``AUDIT_ACCESS_LOG=false`` turns
it off). The client is read after the app ran, so it is the one ``app.web.proxies`` resolved behind trusted
proxies, and the tenant is that of the principal ``app.auth`` authenticated, if any.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

from app.web.observability import request_id_var

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestContext", "install_request_context"]

access_log = logging.getLogger("auditlog.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """ASGI wrapper: request id in, ``X-Request-ID`` out, one access-log line per HTTP request or socket."""

    def __init__(self, app: ASGIApp, *, log_access: bool = True) -> None:
        self.app = app
        self.log_access = log_access
        # A random per-process prefix and a counter: unique ids without a syscall per request.
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.match(candidate):
                    return candidate
                break
        return f"{self._prefix}{next(self._counter):010x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        header = (b"x-request-id", rid.encode())
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
                status.append(message["status"])
            elif message["type"] == "websocket.accept":
                message["headers"] = [*message.get("headers", []), header]
                status.append(101)
            elif message["type"] == "websocket.close" and not status:
                status.append(403)  # closed before the handshake was accepted: the client sees a 403
            await send(message)

        # No response at all: 500 if the app raised, else 499 (nginx's "client closed request").
        unanswered = 499
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            unanswered = 500
            raise
        finally:
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                self._log(scope, status[0] if status else unanswered, started)
            request_id_var.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        method = scope.get("method") or "WEBSOCKET"
        path = scope.get("path", "")
        user: Any = scope.get("user")
        tenant_id = str(user.tenant_id) if getattr(user, "tenant_id", None) else None
        client = scope.get("client")
        host = client[0] if client else None
        access_log.info(
            "%s %s %s %.2f ms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "tenant_id": tenant_id,
                "client": host,
            },
        )


def install_request_context(app: Litestar, *, log_access: bool = True) -> Litestar:
    """Wrap ``app``'s ASGI handler (exception handling and routing included) in ``RequestContext``."""
    app.asgi_handler = RequestContext(app.asgi_handler, log_access=log_access)
    return app
