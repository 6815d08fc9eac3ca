"""Daily and hourly event counts kept beside the lake, so that counting a long window reads a few thousand
counters instead of millions of rows.

One row per (tenant, UTC day, action, severity, resource_type) present in the tenant's lake with its ``events``
(``lake_rollups``), and the same key with the day's 24 hourly counts (``lake_rollup_hours``). The exporter adds
each run's counts in the transaction that lists the run's files and moves the watermark (``write_manifest``
calls :func:`write_rollups`), so the rollups count exactly
the lake's events up to its watermark: a crashed run adds nothing, a re-run adds once. Compaction moves rows
between files, never between hours; retention and cleanup remove events from PostgreSQL, not from the lake.
Neither touches the counts.

A lake exported before the rollups existed is counted once from its files (:func:`backfill_rollups`, run by
the exporter under the tenant's lake lock). Until then ``lake_watermarks.rollup_from`` (> 0) says that the
lake's events with ``seq <= rollup_from`` are not in the rollups, and readers scan instead
(``analytics.window_counts``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

from analytics.lake.manifest import live_files
from analytics.lake.reader import open_lake_batches
from db.tenancy import bind_tenant

if TYPE_CHECKING:
    import asyncpg

    from analytics.lake.store import LakeStore

__all__ = ["ROLLUP_STATE", "HourCounts", "backfill_rollups", "rollups_ready", "write_rollups"]

_HOUR_US: Final = 3_600_000_000
_EPOCH: Final = date(1970, 1, 1)
_KEYS: Final = ("hour", "action", "severity", "resource_type")

ROLLUP_STATE: Final = """
SELECT coalesce(max(last_seq), 0) AS watermark, coalesce(max(rollup_from), 0) AS rollup_from
FROM lake_watermarks WHERE tenant_id = $1
"""
"""The lake's watermark and ``rollup_from`` (0 when the rollups count every lake event)."""

_KEY: Final = "(tenant_id, day, action, severity, resource_type)"
_UPSERT_DAYS: Final = f"""
INSERT INTO lake_rollups AS r (tenant_id, day, action, severity, resource_type, events)
SELECT $1, u.day, u.action, u.severity, u.resource_type, u.events
FROM unnest($2::date[], $3::text[], $4::text[], $5::text[], $6::int8[])
  AS u(day, action, severity, resource_type, events)
ON CONFLICT {_KEY} DO UPDATE SET events = r.events + EXCLUDED.events
"""
_UPSERT_HOURS: Final = f"""
INSERT INTO lake_rollup_hours AS r (tenant_id, day, action, severity, resource_type, hours)
SELECT $1, u.day, u.action, u.severity, u.resource_type, ($6::int4[])[(u.i::int - 1) * 24 + 1 : u.i::int * 24]
FROM unnest($2::date[], $3::text[], $4::text[], $5::text[])
  WITH ORDINALITY AS u(day, action, severity, resource_type, i)
ON CONFLICT {_KEY} DO UPDATE
SET hours = ARRAY(SELECT a + b FROM unnest(r.hours, EXCLUDED.hours) WITH ORDINALITY AS x(a, b, k) ORDER BY k)
"""

_exists = False


async def rollups_ready(conn: asyncpg.Connection) -> bool:
    """Whether the database has the rollup tables (a database not yet migrated to them has no rollups: writers
    skip them, readers scan). Remembered once seen."""
    global _exists
    if not _exists:
        _exists = bool(await conn.fetchval("SELECT to_regclass('lake_rollup_hours') IS NOT NULL"))
    return _exists


class HourCounts:
    """Counts of events per (UTC day, action, severity, resource_type), split into the day's 24 hours."""

    def __init__(self) -> None:
        self.counts: dict[tuple[date, str, str, str], list[int]] = {}

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def events(self) -> int:
        return sum(sum(hours) for hours in self.counts.values())

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Count the rows of ``batch`` (columns ``timestamp``, ``action``, ``severity``, ``resource_type``)."""
        if not batch.num_rows:
            return
        micros = batch.column("timestamp").cast(pa.int64())
        # floor division (timestamps before 1970 are refused at ingest, but stay exact if they ever come)
        hour = pc.divide(pc.subtract(micros, pc.if_else(pc.less(micros, 0), _HOUR_US - 1, 0)), _HOUR_US)
        table = pa.table(
            {
                "hour": hour,
                "action": batch.column("action"),
                "severity": batch.column("severity"),
                "resource_type": batch.column("resource_type"),
            }
        )
        grouped = table.group_by(list(_KEYS), use_threads=False).aggregate([([], "count_all")])
        counts = self.counts
        columns = [grouped.column(k).to_pylist() for k in (*_KEYS, "count_all")]
        for h, action, severity, resource_type, n in zip(*columns, strict=True):
            days, hour_of_day = divmod(h, 24)
            key = (_EPOCH + timedelta(days=days), action, severity, resource_type)
            hours = counts.get(key)
            if hours is None:
                hours = counts[key] = [0] * 24
            hours[hour_of_day] += n

    def rows(self) -> Iterator[tuple[date, str, str, str, list[int]]]:
        for (day, action, severity, resource_type), hours in self.counts.items():
            yield day, action, severity, resource_type, hours


async def write_rollups(conn: asyncpg.Connection, tenant_id: uuid.UUID, counts: HourCounts) -> None:
    """Add ``counts`` to the tenant's rollups (inside the caller's tenant-bound transaction)."""
    if not counts.counts or not await rollups_ready(conn):
        return
    days, actions, severities, types, events, hours = [], [], [], [], [], []
    for day, action, severity, resource_type, by_hour in counts.rows():
        days.append(day)
        actions.append(action)
        severities.append(severity)
        types.append(resource_type)
        events.append(sum(by_hour))
        hours.extend(by_hour)
    await conn.execute(_UPSERT_DAYS, tenant_id, days, actions, severities, types, events)
    await conn.execute(_UPSERT_HOURS, tenant_id, days, actions, severities, types, hours)


def _count_lake(store: LakeStore, files: list, through: int) -> HourCounts:
    counts = HourCounts()
    columns = ["seq", "timestamp", "action", "severity", "resource_type"]
    for batch in open_lake_batches(store, files, None, columns):
        counts.add(batch.filter(pc.less_equal(batch.column("seq"), through)))
    return counts


async def backfill_rollups(conn: asyncpg.Connection, store: LakeStore, tenant_id: uuid.UUID) -> int:
    """Count the lake events the rollups do not hold yet (``seq <= rollup_from``) from the lake's files, once.

    The caller holds the tenant's lake lock (no writer moves the lake meanwhile). Returns how many events
    were counted (0: nothing to do)."""
    if not await rollups_ready(conn):
        return 0
    async with bind_tenant(conn, tenant_id, readonly=True):
        state = await conn.fetchrow(ROLLUP_STATE, tenant_id)
        through = int(state["rollup_from"])
        if through <= 0:
            return 0
        _, files = await live_files(conn, tenant_id)
    files = [f for f in files if f.min_seq <= through]
    counts = await asyncio.to_thread(_count_lake, store, files, through)
    if counts.events != through:  # seqs are dense and every one up to the watermark is in the lake
        raise RuntimeError(f"tenant {tenant_id}: the lake holds {counts.events} events with seq <= {through}")
    async with bind_tenant(conn, tenant_id):
        current = await conn.fetchval(
            "SELECT rollup_from FROM lake_watermarks WHERE tenant_id = $1 FOR UPDATE", tenant_id
        )
        if current != through:
            raise RuntimeError(f"tenant {tenant_id}: rollup_from moved from {through} to {current} during backfill")
        await write_rollups(conn, tenant_id, counts)
        await conn.execute("UPDATE lake_watermarks SET rollup_from = 0 WHERE tenant_id = $1", tenant_id)
    return through
