"""Fan-out of committed events to this process's subscribers, fed by PostgreSQL ``LISTEN``.

Every commit of the write path (in any API process, on any machine) sends ``NOTIFY auditlog_events,
'<tenant_id>:<max_seq>'``: a position, never event content. Each process holds ONE listening connection. On a
notification for a tenant that has subscribers here, the hub reads that tenant's rows after the position it
last read, once for all of the tenant's subscribers (one statement flags each row with every distinct filter
set), decrypts and encodes each event once, and appends it to the tenant's :class:`TenantFeed`. Fetches of
one tenant never overlap and always continue from the last position read, so a missed or coalesced
notification costs nothing but a later fetch; after a reconnect every tenant with subscribers is caught up.

The feed is one bounded window of the tenant's recent frames (``window`` events), shared by its subscribers:
a subscriber is a position in it, not a copy. The hub never waits for anyone: it appends, drops the oldest
frames beyond the window, and wakes the subscribers. A subscriber that falls behind the window (a burst
larger than the window, or a client slower than the tenant's rate) reads from PostgreSQL at its own pace
until it is back inside (``app.stream.session``); one whose client stops taking data while outside the
window is cut with the position to resume from. So a slow client never slows ingest, the hub, or the
tenant's other subscribers, and memory per tenant is bounded whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

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

__all__ = ["Frame", "StreamHub", "Subscriber", "TenantFeed"]

log = logging.getLogger(__name__)

Frame = tuple[int, bytes]
"""An event's position and its JSON (the event exactly as ``GET /logs/{id}`` shows it)."""


class Entry(NamedTuple):
    """One event in a feed: its position, its JSON, and the filter sets it matches (of those ``known``)."""

    seq: int
    data: bytes
    matches: frozenset[LogFilters]


@dataclass(eq=False)
class Subscriber:
    """One stream's registration: its filters and its wake-up.

    ``since`` is set by the hub: every event after that position was read with this subscriber's filter set
    among the flagged ones, so from there on the feed's frames are complete for it. ``None`` until then.
    """

    tenant_id: uuid.UUID
    filters: LogFilters
    since: int | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class TenantFeed:
    """The window of one tenant's recent frames, in position order, and the tenant's subscribers here."""

    def __init__(self, head: int, window: int) -> None:
        self.head = head
        """The last position read from PostgreSQL (every committed event up to it has been considered)."""
        self.floor = head
        """Frames after this position are all in the window (older ones were dropped)."""
        self.window = window
        self.entries: deque[Entry] = deque()
        self.subscribers: set[Subscriber] = set()
        self.pending = head
        self.fetching = False
        self.fetcher: asyncio.Task[None] | None = None

    def filter_sets(self) -> list[LogFilters]:
        return list({s.filters: None for s in self.subscribers})

    def append(self, entries: Iterable[Entry], head: int) -> None:
        self.entries.extend(entries)
        self.head = head
        drop = len(self.entries) - self.window
        if drop > 0:
            for _ in range(drop - 1):
                self.entries.popleft()
            self.floor = self.entries.popleft().seq
        for sub in self.subscribers:
            sub.wake.set()

    def servable(self, position: int, sub: Subscriber) -> bool:
        """Whether every frame after ``position`` that ``sub`` wants is (or will be) in the window."""
        return sub.since is not None and position >= sub.since and position >= self.floor

    def frames_after(self, position: int, filters: LogFilters, most: int) -> list[Frame]:
        """Up to ``most`` frames after ``position`` that match ``filters``, oldest first."""
        entries = self.entries
        if not entries or entries[-1].seq <= position:
            return []
        at = bisect.bisect_right(entries, position, key=lambda e: e.seq)
        frames: list[Frame] = []
        for i in range(at, len(entries)):
            entry = entries[i]
            if filters in entry.matches:
                frames.append((entry.seq, entry.data))
                if len(frames) >= most:
                    break
        return frames


class StreamHub:
    """One per API process (``runtime.services["stream"]``)."""

    def __init__(
        self,
        dsn: str,
        db: TenantDB,
        keyrings: KeyringStore,
        *,
        window: int = 10_000,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._db = db
        self._keyrings = keyrings
        self._window = window
        self._reconnect = reconnect_seconds
        self._feeds: dict[uuid.UUID, TenantFeed] = {}
        self._fetchers: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.fetches = 0

    # -- subscribers -------------------------------------------------------------------------------
    async def subscribe(self, subscriber: Subscriber) -> TenantFeed:
        """Register ``subscriber``; every event committed for its tenant from now on is read for it too."""
        tenant_id = subscriber.tenant_id
        if tenant_id not in self._feeds:
            async with self._db.read(tenant_id) as pg:
                last = await pg.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id)
            # another subscriber may have made the feed while we waited
            self._feeds.setdefault(tenant_id, TenantFeed(int(last or 0), self._window))
        feed = self._feeds[tenant_id]
        feed.subscribers.add(subscriber)
        if not feed.fetching:  # the next fetch flags its filter set: the feed is complete for it from here
            subscriber.since = feed.head
        return feed

    def unsubscribe(self, subscriber: Subscriber) -> None:
        feed = self._feeds.get(subscriber.tenant_id)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            del self._feeds[subscriber.tenant_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(f.subscribers) for f in self._feeds.values())

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
        feed = self._feeds.get(tenant_id)
        if feed is None:
            return
        if seq is not None and seq <= feed.head:
            return
        feed.pending = max(feed.pending, seq or feed.head + 1)
        if feed.fetcher is None or feed.fetcher.done():
            feed.fetcher = task = asyncio.create_task(self._fetch_loop(tenant_id, feed), name=f"stream-{tenant_id}")
            self._fetchers.add(task)
            task.add_done_callback(self._fetchers.discard)

    async def _fetch_loop(self, tenant_id: uuid.UUID, feed: TenantFeed) -> None:
        feed.fetching = True
        try:
            while feed.subscribers and feed.pending > feed.head:
                try:
                    await self._fetch(tenant_id, feed)
                except Exception:
                    log.exception("stream fetch for a tenant failed; retrying")
                    await asyncio.sleep(self._reconnect)
        finally:
            feed.fetching = False
            for sub in feed.subscribers:  # registered during the last fetch: complete from here on
                if sub.since is None:
                    sub.since = feed.head
                    sub.wake.set()

    async def _fetch(self, tenant_id: uuid.UUID, feed: TenantFeed) -> None:
        """Read every event after the feed's head, in order, in batches, and append the wanted ones."""
        while feed.subscribers:
            after = feed.head
            for sub in feed.subscribers:
                if sub.since is None:
                    sub.since = after
            filter_sets = feed.filter_sets()
            async with self._db.read(tenant_id) as pg:
                keyring = await self._keyrings.get(pg, tenant_id)  # also the blind index of any q
                search = search_index(keyring) if any(f.q is not None for f in filter_sets) else None
                sql, args = build_fetch_sql(tenant_id, after, filter_sets, search=search)
                rows = await pg.fetch(sql, *args)
            self.fetches += 1
            if not rows or keyring is None:
                # nothing beyond what was read: the notified rows are already out
                feed.pending = feed.head
                return
            entries: list[Entry] = []
            for row in rows:
                flags = row[COLUMN_COUNT + 1 :]
                matches = frozenset(f for f, hit in zip(filter_sets, flags, strict=True) if hit)
                if matches:
                    data = msgspec.json.encode(row_to_wire(row[:COLUMN_COUNT], keyring))
                    entries.append(Entry(row[COLUMN_COUNT], data, matches))
            feed.append(entries, rows[-1][COLUMN_COUNT])
            if len(rows) < BATCH:
                return

    def feed_of(self, tenant_id: uuid.UUID) -> TenantFeed | None:
        return self._feeds.get(tenant_id)

    # -- the listening connection ------------------------------------------------------------------
    def _connected(self) -> None:
        self._ready.set()
        for tenant_id in list(self._feeds):  # catch up what was committed while we were away
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
        tasks = [t for t in (self._task, *self._fetchers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for feed in self._feeds.values():
            for sub in feed.subscribers:
                sub.wake.set()
