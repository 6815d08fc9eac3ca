"""One subscriber's stream, transport-neutral: replay from a position, then live, with no gap and no duplicate.

The seam between replay and live: the subscriber registers with the hub first (not yet live), replays from
PostgreSQL what was committed after its start position, turns live (from then on the hub offers it every
matching event it dispatches), replays once more (whatever the hub dispatched before the switch is committed,
so this pass finds it), and from then on takes frames from its buffer, dropping any position it already sent.
Positions only grow, so "already sent" is one integer.

The generator yields ``("logs", [(position, event JSON), ...])`` (everything ready to send, in order: a busy
stream is handed whole batches, so its per-event cost is the send alone), ``("ping", position)`` after a quiet
interval, and ends with ``("overflow", position)`` when the client fell too far behind, or ``("revoked",
position)`` when the caller's session or API key was revoked (checked four times a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
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

__all__ = ["StreamEvent", "current_position", "resolve_position", "stream_events"]

StreamEvent = tuple[str, Any]
REVOCATION_CHECK_SECONDS = 0.25


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


async def _replay(
    runtime: Runtime, tenant_id: uuid.UUID, filters: LogFilters, after: int
) -> AsyncIterator[list[Frame]]:
    """What the tenant committed after ``after`` that matches ``filters``, in batches of at most ``BATCH``."""
    while True:
        async with runtime.db.read(tenant_id) as pg:
            keyring = await runtime.keyrings.get(pg, tenant_id)  # also the blind index of q
            search = search_index(keyring) if filters.q is not None else None
            sql, args = build_fetch_sql(tenant_id, after, [filters], replay=True, search=search)
            rows = await pg.fetch(sql, *args)
        if not rows or keyring is None:
            return
        after = rows[-1][COLUMN_COUNT]
        yield [(row[COLUMN_COUNT], _encode(row_to_wire(row[:COLUMN_COUNT], keyring))) for row in rows]
        if len(rows) < BATCH:
            return


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
    ping_seconds: float = 20.0,
    capacity: int = 1000,
) -> AsyncGenerator[StreamEvent, None]:
    """Everything the caller's tenant commits after position ``start`` that matches ``filters``."""
    hub = hub_of(runtime)
    tenant_id = principal.tenant_id
    sub = Subscriber(tenant_id, filters, capacity=capacity)
    await hub.subscribe(sub)
    sent = start
    try:
        async for frames in _replay(runtime, tenant_id, filters, sent):
            sent = frames[-1][0]
            yield "logs", frames
        sub.live = True
        async for frames in _replay(runtime, tenant_id, filters, sent):
            sent = frames[-1][0]
            yield "logs", frames
        hub.poke(tenant_id)
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            if _revoked(runtime, principal):
                yield "revoked", sent
                return
            if sub.overflowed:
                yield "overflow", sent
                return
            frames = [frame for frame in sub.take(BATCH) if frame[0] > sent]
            if frames:
                sent = frames[-1][0]
                quiet_since = loop.time()
                yield "logs", frames
                continue
            sub.wake.clear()
            if sub.buffer or sub.overflowed:
                continue  # filled between the take and the clear
            if loop.time() - quiet_since >= ping_seconds:
                quiet_since = loop.time()
                yield "ping", sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), timeout=REVOCATION_CHECK_SECONDS)
    finally:
        hub.unsubscribe(sub)
