"""Fan-out of committed events to this process's subscribers, fed by PostgreSQL ``LISTEN``.

Every commit of the write path (in any API process, on any machine) sends ``NOTIFY auditlog_events,
'<tenant_id>:<max_seq>'``: a position, never event content. Each process holds ONE listening connection. On a
notification for a tenant that has subscribers here, the hub reads that tenant's rows after the position it
last delivered, once for all of the tenant's subscribers (one statement flags each row with every distinct
filter set), decrypts and encodes each event once, and hands each subscriber the frames it asked for. Fetches
of one tenant never overlap and always continue from the last delivered position, so a missed or coalesced
notification costs nothing but a later fetch; after a reconnect every tenant with subscribers is caught up.

A subscriber has a bounded buffer (``capacity`` events, plus room for one fetched batch). Before reading the
next batch of a tenant the hub lets the tenant's subscribers drain to ``capacity``, waiting at most
``grace_seconds``; a subscriber still above it then is overflowed (its stream ends with a frame naming the
position to resume from) and no longer waited for. So a burst (a 10,000-event bulk) does not cut a client that
keeps up, a client that does not keep up is cut after at most one grace period, and ingest never waits for
anyone: the hub only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from app.logs.ingest import NOTIFY_CHANNEL
from app.logs.query import COLUMN_COUNT, LogFilters
from app.logs.rows import row_to_wire
from app.stream.sql import BATCH, build_fetch_sql
from db.blind_index import search_index
from db.listener import listen_forever

if TYPE_CHECKING:
    from db.keyring import KeyringStore
    from db.tenancy import TenantDB

__all__ = ["Frame", "StreamHub", "Subscriber"]

log = logging.getLogger(__name__)

Frame = tuple[int, bytes]
"""An event's position and its JSON (the event exactly as ``GET /logs/{id}`` shows it)."""


@dataclass(eq=False)
class Subscriber:
    """One stream's mailbox. ``live`` is set once its replay caught up; the hub fills it only while live.

    A plain deque and an event rather than an ``asyncio.Queue``: the hub appends a whole fetched batch and the
    stream takes everything buffered in one call, so a busy stream costs one wake-up per batch, not per event.
    """

    tenant_id: uuid.UUID
    filters: LogFilters
    capacity: int = 1000
    live: bool = False
    overflowed: bool = False
    taken: int = 0
    """Frames taken from the buffer so far (the hub tells a stopped reader from a slow one by it)."""
    buffer: deque[Frame] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def limit(self) -> int:
        """The most frames the buffer holds: ``capacity`` plus room for one fetched batch."""
        return self.capacity + BATCH

    @property
    def behind(self) -> bool:
        return len(self.buffer) > self.capacity

    def offer(self, frame: Frame) -> None:
        if self.overflowed:
            return
        if len(self.buffer) >= self.limit:
            self.overflowed = True
            self.wake.set()
            return
        self.buffer.append(frame)

    def take(self, most: int) -> list[Frame]:
        """Up to ``most`` buffered frames, oldest first."""
        buffer = self.buffer
        count = min(most, len(buffer))
        frames = [buffer.popleft() for _ in range(count)]
        self.taken += count
        return frames


class StreamHub:
    """One per API process (``runtime.services["stream"]``)."""

    def __init__(
        self,
        dsn: str,
        db: TenantDB,
        keyrings: KeyringStore,
        *,
        reconnect_seconds: float = 1.0,
        grace_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._grace = grace_seconds
        self._db = db
        self._keyrings = keyrings
        self._reconnect = reconnect_seconds
        self._subscribers: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self._delivered: dict[uuid.UUID, int] = {}
        self._pending: dict[uuid.UUID, int] = {}
        self._fetchers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.fetches = 0

    # -- subscribers -------------------------------------------------------------------------------
    async def subscribe(self, subscriber: Subscriber) -> None:
        """Register ``subscriber``; from now on every event committed for its tenant is offered to it once live."""
        tenant_id = subscriber.tenant_id
        if tenant_id not in self._delivered:
            async with self._db.read(tenant_id) as pg:
                last = await pg.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id)
            # another subscriber may have registered the tenant while we waited
            self._delivered.setdefault(tenant_id, int(last or 0))
        self._subscribers[tenant_id].add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subs = self._subscribers.get(subscriber.tenant_id)
        if subs is None:
            return
        subs.discard(subscriber)
        if not subs:
            del self._subscribers[subscriber.tenant_id]
            self._delivered.pop(subscriber.tenant_id, None)
            self._pending.pop(subscriber.tenant_id, None)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    # -- notifications -----------------------------------------------------------------------------
    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        tenant_text, _, seq_text = payload.partition(":")
        try:
            tenant_id, seq = uuid.UUID(tenant_text), int(seq_text)
        except ValueError:
            return
        self.poke(tenant_id, seq)

    def poke(self, tenant_id: uuid.UUID, seq: int | None = None) -> None:
        """Fetch the tenant's new events (up to at least ``seq``) unless nobody here listens to it."""
        if tenant_id not in self._subscribers:
            return
        delivered = self._delivered.get(tenant_id, 0)
        if seq is not None and seq <= delivered:
            return
        self._pending[tenant_id] = max(self._pending.get(tenant_id, 0), seq or delivered + 1)
        task = self._fetchers.get(tenant_id)
        if task is None or task.done():
            self._fetchers[tenant_id] = asyncio.create_task(self._fetch_loop(tenant_id), name=f"stream-{tenant_id}")

    async def _fetch_loop(self, tenant_id: uuid.UUID) -> None:
        while tenant_id in self._subscribers and self._pending.get(tenant_id, 0) > self._delivered.get(tenant_id, 0):
            try:
                await self._fetch(tenant_id)
            except Exception:
                log.exception("stream fetch for tenant %s failed; retrying", tenant_id)
                await asyncio.sleep(self._reconnect)

    async def _make_room(self, tenant_id: uuid.UUID) -> None:
        """Wait for the tenant's live subscribers to drain to their capacity, then cut the ones that will not.

        A subscriber still behind after the grace period is cut if it took nothing from its buffer in that
        period (a client that stopped reading); one that is draining, only slower than the burst came, gets
        up to three grace periods in all before it is cut as well.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        taken = {id(s): s.taken for s in self._subscribers.get(tenant_id, ())}
        while True:
            behind = [s for s in self._subscribers.get(tenant_id, ()) if s.live and not s.overflowed and s.behind]
            if not behind:
                return
            waited = loop.time() - start
            if waited >= self._grace:
                stuck = [s for s in behind if waited >= 3 * self._grace or s.taken == taken.get(id(s), s.taken)]
                for sub in stuck:
                    sub.overflowed = True
                    sub.wake.set()
                if len(stuck) == len(behind):
                    return
            await asyncio.sleep(0.01)

    async def _fetch(self, tenant_id: uuid.UUID) -> None:
        """Read and dispatch every event after the delivered position, in order, in batches."""
        while True:
            await self._make_room(tenant_id)
            subs = self._subscribers.get(tenant_id)
            if not subs:
                return
            filter_sets = list({s.filters: None for s in subs})
            after = self._delivered[tenant_id]
            async with self._db.read(tenant_id) as pg:
                keyring = await self._keyrings.get(pg, tenant_id)  # also the blind index of any q
                search = search_index(keyring) if any(f.q is not None for f in filter_sets) else None
                sql, args = build_fetch_sql(tenant_id, after, filter_sets, search=search)
                rows = await pg.fetch(sql, *args)
            self.fetches += 1
            if not rows or keyring is None:
                # nothing beyond what was delivered: the notified rows are already out
                self._pending[tenant_id] = after
                return
            index = {f: i for i, f in enumerate(filter_sets)}
            for row in rows:
                seq = row[COLUMN_COUNT]
                flags = row[COLUMN_COUNT + 1 :]
                frame: Frame | None = None
                for sub in list(self._subscribers.get(tenant_id, ())):
                    if not sub.live or not flags[index.get(sub.filters, 0)]:
                        continue
                    if frame is None:
                        frame = (seq, msgspec.json.encode(row_to_wire(row[:COLUMN_COUNT], keyring)))
                    sub.offer(frame)
                if tenant_id in self._delivered:
                    self._delivered[tenant_id] = seq
            for sub in self._subscribers.get(tenant_id, ()):
                sub.wake.set()
            if len(rows) < BATCH:
                return

    # -- the listening connection ------------------------------------------------------------------
    def _connected(self) -> None:
        self._ready.set()
        for tenant_id in list(self._subscribers):  # catch up what was committed while we were away
            self.poke(tenant_id)

    async def start(self) -> StreamHub:
        listener = listen_forever(
            self._dsn, NOTIFY_CHANNEL, self._on_notify, on_connect=self._connected, name="stream listener"
        )
        self._task = asyncio.create_task(listener, name="stream-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=10)
        return self

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._fetchers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subs in self._subscribers.values():
            for sub in subs:
                sub.wake.set()
