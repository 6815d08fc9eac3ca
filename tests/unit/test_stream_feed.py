"""The live stream's per-tenant window (``app.stream.hub.TenantFeed``): positions, filters, what falls out."""

from __future__ import annotations

import uuid

from app.logs.query import LogFilters
from app.stream.hub import Entry, Subscriber, TenantFeed


def _filters(**kwargs: object) -> LogFilters:
    return LogFilters(**kwargs)  # type: ignore[arg-type]


ALL = _filters()
DELETES = _filters(action=("DELETE",))


def _entry(seq: int, *matches: LogFilters) -> Entry:
    return Entry(seq, b'{"seq":%d}' % seq, frozenset(matches))


def test_frames_after_a_position_are_the_matching_ones_in_order_up_to_most() -> None:
    feed = TenantFeed(head=10, window=100)
    feed.append([_entry(11, ALL), _entry(13, ALL, DELETES), _entry(14, ALL), _entry(17, DELETES)], head=20)
    assert feed.head == 20
    assert [seq for seq, _ in feed.frames_after(10, ALL, 10)] == [11, 13, 14]
    assert [seq for seq, _ in feed.frames_after(11, ALL, 10)] == [13, 14]
    assert [seq for seq, _ in feed.frames_after(12, ALL, 1)] == [13]
    assert [seq for seq, _ in feed.frames_after(10, DELETES, 10)] == [13, 17]
    assert feed.frames_after(17, DELETES, 10) == []
    assert feed.frames_after(99, ALL, 10) == []


def test_the_window_drops_the_oldest_and_moves_its_floor() -> None:
    feed = TenantFeed(head=0, window=3)
    feed.append([_entry(n, ALL) for n in range(1, 6)], head=5)
    assert [e.seq for e in feed.entries] == [3, 4, 5]
    assert feed.floor == 2  # frames after 2 are all here; 1 and 2 were dropped
    sub = Subscriber(uuid.uuid4(), ALL, since=0)
    assert not feed.servable(1, sub)
    assert feed.servable(2, sub) and [s for s, _ in feed.frames_after(2, ALL, 10)] == [3, 4, 5]


def test_a_subscriber_is_served_only_after_the_position_its_filters_are_read_from() -> None:
    feed = TenantFeed(head=50, window=10)
    waiting = Subscriber(uuid.uuid4(), DELETES)
    assert not feed.servable(60, waiting)  # the hub has not named its position yet
    waiting.since = 50
    assert not feed.servable(49, waiting) and feed.servable(50, waiting)


def test_appending_wakes_every_subscriber() -> None:
    feed = TenantFeed(head=0, window=10)
    subs = [Subscriber(uuid.uuid4(), ALL, since=0) for _ in range(3)]
    feed.subscribers.update(subs)
    feed.append([_entry(1, ALL)], head=1)
    assert all(s.wake.is_set() for s in subs)
