"""``WS /api/v1/logs/stream`` and ``GET /api/v1/logs/stream/sse``: the live tail of the caller's tenant.

Both take the filters of ``GET /logs`` and a start position (``after`` = an event id or a position; for SSE
also ``Last-Event-ID``); without one they start at the tenant's current position (new events only). Each
frame carries the event exactly as ``GET /logs/{id}`` shows it, with its position. Subscribing is an audited
read (``VIEW`` of ``audit_log``).

WebSocket credentials: ``Authorization: Bearer``, ``X-API-Key``, ``?token=``, or for browsers (which cannot
set headers on a socket) the subprotocol pair ``Sec-WebSocket-Protocol: bearer, <token>`` (the server then
selects ``bearer``). Missing, bad, expired or revoked credentials, and a role that may not read, close the
socket with 1008; so does a revocation mid-stream. Invalid filters send one ``{"type": "error", ...}`` frame
(the 422 problem) and close with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream

from app.auth.authenticator import InvalidCredentials
from app.auth.principal import Principal
from app.dependencies import runtime_of
from app.guards import READERS, principal_of
from app.logs.query import parse_filters
from app.read_audit import get_recorder
from app.runtime import Runtime
from app.stream.session import Progress, current_position, resolve_position, stream_events
from app.web.errors import ApiError

__all__ = ["logs_stream", "logs_stream_sse"]

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
SEND_TIMEOUT = 30.0
SSE_CHUNK = 50
"""Events per SSE write: the session learns between writes that the client still takes data."""


def _filters_and_start(params: dict[str, list[str]], last_event_id: str | None = None) -> tuple[Any, str | None]:
    errors: list[dict[str, Any]] = []
    filters = parse_filters(params, errors)
    afters = [v for v in params.get("after", ()) if v != ""]
    if len(afters) > 1:
        errors.append({"field": "after", "message": "may be given only once"})
    if errors:
        fields = ", ".join(dict.fromkeys(str(e["field"]) for e in errors))
        raise ApiError(422, f"invalid query parameters: {fields}", errors=errors)
    after = afters[0] if afters else (last_event_id.strip() or None if last_event_id else None)
    return filters, after


def _audit(runtime: Runtime, principal: Principal, scope: Any, transport: str, filters: Any, start: int) -> None:
    client = scope.get("client")
    headers = dict(scope.get("headers", ()))
    get_recorder(runtime).record_read(
        principal,
        "VIEW",
        "/api/v1/logs/stream",
        {"filters": filters.describe(), "transport": transport, "after_position": start},
        request_id=scope.get("state", {}).get("request_id"),
        ip_address=client[0] if client else None,
        user_agent=headers.get(b"user-agent", b"").decode("latin-1") or None,
    )


async def _socket_principal(socket: WebSocket[Any, Any, Any], runtime: Runtime) -> tuple[Principal | None, str | None]:
    """The caller, from the middleware's result or the browser subprotocol pair; and the subprotocol to select."""
    if socket.scope.get("auth_error"):
        return None, None
    principal = socket.scope.get("user")
    if isinstance(principal, Principal):
        return principal, None
    protocols = [p.strip() for p in socket.scope.get("subprotocols", [])]
    if "bearer" in protocols:
        at = protocols.index("bearer")
        if at + 1 < len(protocols) and protocols[at + 1]:
            try:
                return await runtime.authenticator.authenticate(protocols[at + 1]), "bearer"
            except InvalidCredentials:
                return None, None
    return None, None


async def _refuse(socket: WebSocket[Any, Any, Any], reason: str, frame: dict[str, Any] | None = None) -> None:
    await socket.accept()
    if frame is not None:
        await socket.send_data(msgspec.json.encode(frame).decode())
    await socket.close(code=POLICY_VIOLATION, reason=reason[:120])


async def _send(socket: WebSocket[Any, Any, Any], data: str | bytes) -> None:
    """Send one text frame; a client that takes no data for ``SEND_TIMEOUT`` seconds is given up."""
    await asyncio.wait_for(socket.send_data(data, mode="text"), timeout=SEND_TIMEOUT)


async def _send_frames(socket: WebSocket[Any, Any, Any], frames: list[tuple[int, bytes]], progress: Progress) -> None:
    """Send a batch of events, one text frame each, in order; the whole batch within ``SEND_TIMEOUT``."""
    async with asyncio.timeout(SEND_TIMEOUT):
        for seq, data in frames:
            await socket.send_data(b'{"type":"log","position":%d,"data":%s}' % (seq, data), mode="text")
            progress.touch()


async def _until_disconnect(socket: WebSocket[Any, Any, Any]) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return


@websocket("/api/v1/logs/stream", opt={"public": True})
async def logs_stream(socket: WebSocket[Any, Any, Any]) -> None:
    try:
        await _serve_socket(socket)
    except Exception:
        log.exception("live stream socket failed")
        with contextlib.suppress(Exception):
            await socket.close(code=1011, reason="internal error")


async def _serve_socket(socket: WebSocket[Any, Any, Any]) -> None:
    runtime: Runtime = socket.app.state.runtime
    principal, subprotocol = await _socket_principal(socket, runtime)
    if principal is None:
        await _refuse(socket, "missing, invalid, expired or revoked credentials")
        return
    if principal.role not in READERS.roles:
        await _refuse(socket, f"role {principal.role.value} may not read events")
        return
    try:
        filters, after = _filters_and_start(dict(socket.query_params.dict()))
        start = (
            await resolve_position(runtime, principal.tenant_id, after)
            if after is not None
            else await current_position(runtime, principal.tenant_id)
        )
    except ApiError as exc:
        problem = {"type": "error", "status": exc.status_code, "detail": exc.detail, "errors": exc.errors or []}
        await _refuse(socket, exc.detail, problem)
        return
    await socket.accept(subprotocols=subprotocol)
    _audit(runtime, principal, socket.scope, "websocket", filters, start)
    reader = asyncio.create_task(_until_disconnect(socket))
    progress = Progress()
    events = _events(runtime, principal, filters, start, progress)
    try:
        while True:
            nxt = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({nxt, reader}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:  # the client left
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return
            try:
                kind, payload = nxt.result()
            except StopAsyncIteration:
                return
            if kind == "logs":
                await _send_frames(socket, payload, progress)
            elif kind == "ping":
                await _send(socket, f'{{"type":"ping","position":{payload}}}')
            elif kind == "overflow":
                await _send(socket, f'{{"type":"overflow","resume_after":{payload}}}')
                await socket.close(code=1013, reason="client too slow; resume with ?after=<resume_after>")
                return
            elif kind == "revoked":
                await socket.close(code=POLICY_VIOLATION, reason="credentials revoked")
                return
    except (WebSocketDisconnect, TimeoutError):
        return  # gone, or not reading at all: stop serving it
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await events.aclose()


def _events(
    runtime: Runtime, principal: Principal, filters: Any, start: int, progress: Progress
) -> AsyncGenerator[tuple[str, Any], None]:
    settings = runtime.settings
    return stream_events(
        runtime,
        principal,
        filters,
        start,
        progress=progress,
        ping_seconds=settings.stream_ping_seconds,
        stall_seconds=settings.stream_stall_seconds,
    )


async def _sse_chunks(events: AsyncGenerator[tuple[str, Any], None], progress: Progress) -> AsyncIterator[bytes]:
    """The stream as ``text/event-stream`` bytes: a chunk per ``SSE_CHUNK`` events (an event's JSON is one line)."""
    yield b": auditlog stream\nretry: 2000\n\n"
    try:
        async for kind, payload in events:
            if kind == "logs":
                for at in range(0, len(payload), SSE_CHUNK):
                    yield b"".join(b"id: %d\ndata: %s\n\n" % frame for frame in payload[at : at + SSE_CHUNK])
                    progress.touch()
            elif kind == "ping":
                yield b": ping\n\n"
            else:  # overflow or revoked: say so, then end the response
                yield b'event: %s\ndata: {"resume_after":%d}\n\n' % (kind.encode(), payload)
                return
    finally:
        await events.aclose()


@get(
    "/api/v1/logs/stream/sse",
    guards=[READERS],
    tags=["logs"],
    summary="Live tail of new events as Server-Sent Events (resumable)",
    description=(
        "Every event the caller's tenant commits from now on (or after `after` / `Last-Event-ID`), in commit "
        "order, filtered by the `GET /logs` query parameters. Each SSE event has `id:` = the event's position "
        "and `data:` = the event exactly as `GET /logs/{id}` shows it; reconnecting with `Last-Event-ID` (or "
        "`?after=`, an event id or a position) replays what was committed since, then goes live, with no gap "
        "and no duplicate. A `: ping` comment is sent after 20 s without events. A client that falls behind the "
        "tenant's in-memory window (`AUDIT_STREAM_BUFFER_EVENTS`, 10,000 events) is served from the database at "
        "its own pace; one that also takes no data for `AUDIT_STREAM_STALL_SECONDS` (3 s) gets `event: overflow` "
        'with `{"resume_after": <position>}` and the response ends; a revoked session or key ends it with '
        "`event: revoked`. The same stream is served as "
        'a WebSocket at `/api/v1/logs/stream` (frames `{"type": "log", "position", "data"}`; token in '
        "`Authorization`, `?token=` or `Sec-WebSocket-Protocol: bearer, <token>`; closed with 1008 for bad "
        "credentials or a revocation)."
    ),
    responses={
        200: ResponseSpec(None, description="text/event-stream", media_type="text/event-stream"),
        404: ResponseSpec(None, description="`after` names no event of the caller's tenant"),
        422: ResponseSpec(None, description="Invalid query parameters; `errors` names each one"),
    },
    include_in_schema=True,
)
async def logs_stream_sse(request: Request[Any, Any, Any]) -> Stream:
    runtime = runtime_of(request)
    principal = principal_of(request)
    filters, after = _filters_and_start(request.query_params.dict(), request.headers.get("last-event-id"))
    if after is not None:
        start = await resolve_position(runtime, principal.tenant_id, after)
    else:
        start = await current_position(runtime, principal.tenant_id)
    _audit(runtime, principal, request.scope, "sse", filters, start)
    progress = Progress()
    events = _events(runtime, principal, filters, start, progress)
    return Stream(
        _sse_chunks(events, progress),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
