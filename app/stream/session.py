"""One subscriber's stream, transport-neutral: replay from a position, then live, with no gap and no duplicate.

The subscriber registers with the hub first; from the position the hub names (``Subscriber.since``) on, the
tenant's feed holds every event it wants. Until its position is inside the feed's window it reads from
PostgreSQL, a batch at a time, what was committed after its position (a resume, a client slower than the
tenant's rate, a burst larger than the window); a batch shorter than a full one means it has read everything
the hub had read before that statement, so from there the window serves it. Positions only grow and every
read starts after the last position handed over, so nothing is sent twice or skipped at the seam.

The generator yields ``("logs", [(position, event JSON), ...])`` (everything ready to send, in order: a busy
stream is handed whole batches, so its per-event cost is the send alone), ``("ping", position)`` after a quiet
interval, and ends with ``("overflow", position)`` when the client took no data for ``stall_seconds`` while
the window moved past it, or ``("revoked", position)`` when the caller's session or API key was revoked
(checked four times a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import msgspec

from app.logs.query import COLUMN_COUNT, LogFilters
from app.logs.rows import row_to_wire
from app.stream.hub import Frame, StreamHub, Subscriber
from app.stream.sql import BATCH, build_fetch_sql, build_position_of_sql
from app.web.errors import ApiError, NotFound
from db.blind_index import search_index

if TYPE_CHECKING:
    from app.auth.principal import Principal
    from app.runtime import Runtime

__all__ = ["Progress", "StreamEvent", "current_position", "resolve_position", "stream_events"]

StreamEvent = tuple[str, Any]
REVOCATION_CHECK_SECONDS = 0.25


class Progress:
    """How a transport tells the session that its client takes data: ``touch()`` after each frame sent.

    ``longest`` is the longest time between two touches (or since the last one) since ``reset()``: a
    client that took no frame at all for that long.
    """

    __slots__ = ("at", "longest")

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.longest = 0.0

    def touch(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.at)
        self.at = now

    def reset(self) -> None:
        self.at = time.monotonic()
        self.longest = 0.0

    def stalled(self) -> float:
        return max(self.longest, time.monotonic() - self.at)


def hub_of(runtime: Runtime) -> StreamHub:
    hub = runtime.services.get("stream")
    if hub is None:
        raise ApiError(503, "the live stream is not running in this process")
    return hub  # type: ignore[no-any-return]


async def current_position(runtime: Runtime, tenant_id: uuid.UUID) -> int:
    async with runtime.db.read(tenant_id) as pg:
        value = await pg.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id)
    return int(value or 0)


async def resolve_position(runtime: Runtime, tenant_id: uuid.UUID, after: str) -> int:
    """``after`` as a position: an event id of the tenant, or a position number (``id:`` of an SSE event)."""
    text = after.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        event_id = uuid.UUID(text)
    except ValueError:
        raise ApiError(
            422,
            "invalid query parameters: after",
            errors=[{"field": "after", "message": "must be an event id or a position (non-negative integer)"}],
        ) from None
    sql, args = build_position_of_sql(tenant_id, event_id)
    async with runtime.db.read(tenant_id) as pg:
        seq = await pg.fetchval(sql, *args)
    if seq is None:
        raise NotFound("event")
    return int(seq)


async def _replay_batch(runtime: Runtime, tenant_id: uuid.UUID, filters: LogFilters, after: int) -> list[Frame]:
    """Up to ``BATCH`` events the tenant committed after ``after`` that match ``filters``, read from PostgreSQL."""
    async with runtime.db.read(tenant_id) as pg:
        keyring = await runtime.keyrings.get(pg, tenant_id)  # also the blind index of q
        search = search_index(keyring) if filters.q is not None else None
        sql, args = build_fetch_sql(tenant_id, after, [filters], replay=True, search=search)
        rows = await pg.fetch(sql, *args)
    if not rows or keyring is None:
        return []
    return [(row[COLUMN_COUNT], _encode(row_to_wire(row[:COLUMN_COUNT], keyring))) for row in rows]


def _encode(event: Any) -> bytes:
    return msgspec.json.encode(event)


def _revoked(runtime: Runtime, principal: Principal) -> bool:
    ident = principal.session_id if principal.kind == "user" else principal.subject_id
    return runtime.revocations.is_revoked(ident)


async def stream_events(
    runtime: Runtime,
    principal: Principal,
    filters: LogFilters,
    start: int,
    *,
    progress: Progress,
    ping_seconds: float = 20.0,
    stall_seconds: float = 3.0,
) -> AsyncGenerator[StreamEvent, None]:
    """Everything the caller's tenant commits after position ``start`` that matches ``filters``."""
    hub = hub_of(runtime)
    tenant_id = principal.tenant_id
    sub = Subscriber(tenant_id, filters)
    feed = await hub.subscribe(sub)
    sent = start  # the last position handed to the client
    scanned = start  # every matching event up to here has been handed to the client
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    try:
        while True:
            if _revoked(runtime, principal):
                yield "revoked", sent
                return
            sub.wake.clear()  # before reading: whatever the hub appends from now on wakes us
            cursor = max(sent, scanned)
            if feed.servable(cursor, sub):
                frames = feed.frames_after(cursor, filters, BATCH)
            else:  # not (or no longer) inside the tenant's window: read from PostgreSQL at our own pace
                reach = feed.head  # committed and read by the hub before the statement starts
                frames = await _replay_batch(runtime, tenant_id, filters, cursor)
                if len(frames) < BATCH:
                    scanned = max(scanned, reach)
            if frames:
                sent = frames[-1][0]
                quiet_since = loop.time()
                progress.reset()
                yield "logs", frames
                if progress.stalled() >= stall_seconds and not feed.servable(max(sent, scanned), sub):
                    yield "overflow", sent  # stopped taking data, and the window has moved past it
                    return
                continue
            if not feed.servable(max(sent, scanned), sub) and sub.since is not None:
                continue  # the replay caught up while the window moved on: look again
            if loop.time() - quiet_since >= ping_seconds:
                quiet_since = loop.time()
                yield "ping", sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), timeout=REVOCATION_CHECK_SECONDS)
    finally:
        hub.unsubscribe(sub)
