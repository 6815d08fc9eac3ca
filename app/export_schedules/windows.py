"""Windows of a schedule, and when one is closed: every event received in it is committed.

A window is ``[start, end)`` of ``received_at``, aligned to the hour or the UTC day. ``received_at`` is the API
process's clock when it prepared the event, a moment *before* the transaction that stores it; so at the
window's end some of its events may still be in flight. A window closes in two steps:

1. the **lag**: the worker's clock is at least ``close_lag`` past the window's end. The lag bounds both the
   time from an event's ``received_at`` to its transaction taking a transaction id and the skew between the
   API's and the worker's clocks: a transaction that starts after ``end + lag`` carries no event of the window.
2. the **fence**: at such a moment the worker records ``pg_current_snapshot()`` (``fence_snapshot``, with its
   time ``fence_at``); the window closes once every transaction in progress in that snapshot has ended
   (``pg_xact_status``). Then every transaction that could hold one of its events has committed or rolled back.

One fence serves every window ending at or before ``fence_at - lag`` (a backlog of missed windows closes at
once); a new fence is taken only when the next window ends later than the current one covers, so a busy server
cannot keep pushing the close back. A fence waits for a long transaction of any tenant (that delays windows,
never loses an event).

**Position marks** make a window cheap to read: every ``MARK_EVERY`` the worker records the tenant's last log
position (``seq``). Positions are handed out in commit order after ``received_at`` was set, so an event
received at or after ``start`` sits above the last position recorded at or before ``start - lag``: the window
is read from there up (the per-tenant ``seq`` index; lake files by their ``seq`` range), whatever the size of
the tenant's log.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

__all__ = [
    "MARK_EVERY",
    "MARK_KEEP",
    "align",
    "ensure_fence",
    "fence_settled",
    "last_closed_window",
    "seq_floor",
    "take_mark",
    "window_end",
    "window_name",
]

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
MARK_EVERY: Final = timedelta(minutes=5)
MARK_KEEP: Final = timedelta(days=40)


def align(t: datetime, every: str) -> datetime:
    """The start of the hour or UTC day holding ``t``."""
    t = t.astimezone(UTC)
    hour = t.replace(minute=0, second=0, microsecond=0)
    return hour.replace(hour=0) if every == "day" else hour


def window_end(start: datetime, every: str) -> datetime:
    """The end of the window starting at ``start``. A daily schedule whose cursor is not at midnight (its period
    was changed from ``hour``) delivers hourly windows until it reaches one, so windows never overlap."""
    if every == "day" and align(start, "day") == start:
        return start + DAY
    return start + HOUR


def window_name(start: datetime) -> str:
    """The window's start as object names carry it: ``2026-01-02T03:00:00Z``."""
    return start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_closed_window(now: datetime, every: str, lag: timedelta) -> tuple[datetime, datetime]:
    """The latest window whose end is at least ``lag`` before ``now`` (closed once its fence settles)."""
    end = align(now - lag, every)
    return end - (DAY if every == "day" else HOUR), end


_FENCE = """
UPDATE export_schedules SET fence_at = $3, fence_snapshot = pg_current_snapshot()
WHERE tenant_id = $1 AND id = $2 AND (fence_at IS NULL OR fence_at < $3)
"""
_SETTLED = """
SELECT s.fence_at,
       s.fence_snapshot IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM pg_snapshot_xip(s.fence_snapshot) AS x(xid) WHERE pg_xact_status(x.xid) = 'in progress'
       ) AS settled
FROM export_schedules s WHERE s.tenant_id = $1 AND s.id = $2
"""


async def ensure_fence(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, end: datetime, now: datetime, lag: timedelta
) -> bool:
    """Make sure a fence covering the window ending at ``end`` is recorded (``conn``: tenant-bound, in a
    transaction with no write before this one, so its own transaction id is not in the snapshot). False while
    the lag has not passed."""
    row = await conn.fetchrow(_SETTLED, tenant_id, schedule_id)
    if row is None:
        return False
    if row["fence_at"] is not None and row["fence_at"] >= end + lag:
        return True
    if now < end + lag:
        return False
    await conn.execute(_FENCE, tenant_id, schedule_id, now)
    return True


async def fence_settled(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, end: datetime, lag: timedelta
) -> bool:
    """True when the schedule's fence covers the window ending at ``end`` and no transaction that was in progress
    when it was taken is still running: the window is closed."""
    row = await conn.fetchrow(_SETTLED, tenant_id, schedule_id)
    return bool(row is not None and row["fence_at"] is not None and row["fence_at"] >= end + lag and row["settled"])


async def take_mark(conn: asyncpg.Connection, tenant_id: uuid.UUID, now: datetime) -> None:
    """Record the tenant's last log position at ``now`` unless one was recorded less than ``MARK_EVERY`` ago;
    forget marks older than ``MARK_KEEP`` (conn: tenant-bound, in a transaction)."""
    recent = await conn.fetchval(
        "SELECT 1 FROM export_seq_marks WHERE tenant_id = $1 AND taken_at > $2 AND taken_at <= $3 LIMIT 1",
        tenant_id,
        now - MARK_EVERY,
        now,
    )
    if recent:
        return
    await conn.execute(
        "INSERT INTO export_seq_marks (tenant_id, taken_at, last_seq)"
        " SELECT $1, $2, last_seq FROM tenant_log_seq WHERE tenant_id = $1 ON CONFLICT DO NOTHING",
        tenant_id,
        now,
    )
    await conn.execute(
        "DELETE FROM export_seq_marks WHERE tenant_id = $1 AND taken_at < $2", tenant_id, now - MARK_KEEP
    )


async def seq_floor(conn: asyncpg.Connection, tenant_id: uuid.UUID, start: datetime, lag: timedelta) -> int:
    """A log position every event received at or after ``start`` is above (0 when no mark is old enough)."""
    value = await conn.fetchval(
        "SELECT max(last_seq) FROM export_seq_marks WHERE tenant_id = $1 AND taken_at <= $2",
        tenant_id,
        start - lag,
    )
    return int(value or 0)
