"""Exact counts of a tenant's events in a time window from the lake's hourly rollups plus PostgreSQL, without
scanning the window's rows: what ``GET /logs/stats`` answers from whenever its filters allow.

The window ``[start, end]`` (both inclusive, to the microsecond) is cut into whole UTC hours and at most two
partial hours at its edges. Every event is counted once, from exactly one of:

- the lake's events (``seq`` up to the watermark) in the whole hours: ``lake_rollups``
  (``analytics.lake.rollups``), whose dimensions are exactly the filters allowed here;
- the hot tail (``seq`` above the watermark), anywhere in the window: ``audit_logs``, grouped by PostgreSQL;
- the lake's events in the partial hours: ``audit_logs`` as well when PostgreSQL still holds every lake event of
  that hour (its count of the hour's events with ``seq`` up to the watermark equals the rollup's count of the
  hour: PostgreSQL's are a subset of the lake's, so equal counts mean the same events); otherwise (retention or
  cleanup removed some) the lake files of that day, read with pyarrow.

The watermark, the rollups and every ``audit_logs`` read share one ``REPEATABLE READ`` snapshot, so an export
that commits meanwhile moves nothing between the parts. Buckets are UTC hours or days, like the engine's.

:func:`count_window` returns ``None`` when it cannot answer exactly - the filters use a field the rollups do not
keep (user, resource id, session, request, address, ``q``, positions, ...) or the lake's rollups are not complete
yet (a lake written before they existed, until the exporter backfills it) - and the caller scans instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec
import pyarrow as pa

from analytics.filters import lake_expression
from analytics.lake.rollups import ROLLUP_STATE, rollups_ready
from analytics.lake_seam import lake_module
from analytics.tail import snapshot
from db.event_filters import Binder, LogFilters, filter_predicate, service_clause

if TYPE_CHECKING:
    import asyncpg

__all__ = ["WindowCounts", "answerable", "count_window"]

_HOUR: Final = timedelta(hours=1)
_MICRO: Final = timedelta(microseconds=1)
_DIMENSIONS: Final = ("action", "severity", "resource_type")
_ROLLUP_FILTERS: Final = {
    "start_time": None,
    "end_time": None,
    "action": (),
    "resource_type": (),
    "severity": (),
    "exclude_action": (),
    "exclude_resource_type": (),
    "include_system": False,
}
_NO_FILTERS: Final = LogFilters()
# GROUPING(bucket, action, severity, resource_type): a bit is set for each column NOT grouped by.
_SETS: Final = {0b1111: "total", 0b1011: "action", 0b1101: "severity", 0b1110: "resource_type", 0b0111: "bucket"}


@dataclass(slots=True)
class WindowCounts:
    """The counts of a window: ``series`` holds only the buckets that have events."""

    total: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    by_resource_type: Counter[str] = field(default_factory=Counter)
    series: Counter[datetime] = field(default_factory=Counter)
    edges_from_lake: int = 0
    """How many partial hours were counted from lake files (PostgreSQL no longer held all their events)."""

    def add(self, bucket: datetime, action: str, severity: str, resource_type: str, n: int) -> None:
        self.total += n
        self.by_action[action] += n
        self.by_severity[severity] += n
        self.by_resource_type[resource_type] += n
        self.series[bucket] += n


def answerable(filters: LogFilters) -> bool:
    """Whether the rollups hold every field ``filters`` restricts (time, action, severity, resource type)."""
    return msgspec.structs.replace(filters, **_ROLLUP_FILTERS) == _NO_FILTERS


@dataclass(frozen=True, slots=True)
class _Window:
    """``[start, end)`` (``end`` exclusive) cut into whole hours ``[h0, h1)`` and partial ``edges``."""

    start: datetime
    end: datetime
    h0: datetime | None
    h1: datetime | None
    edges: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def of(cls, start: datetime, end_inclusive: datetime) -> _Window:
        start, end = start.astimezone(UTC), end_inclusive.astimezone(UTC) + _MICRO
        floor = start.replace(minute=0, second=0, microsecond=0)
        h0 = floor if floor == start else floor + _HOUR
        h1 = end.replace(minute=0, second=0, microsecond=0)
        if h0 > h1:  # the window lies inside one hour
            return cls(start, end, None, None, ((start, end),))
        edges = tuple(e for e in ((start, h0), (h1, end)) if e[0] < e[1])
        return cls(start, end, h0, h1, edges) if h0 < h1 else cls(start, end, None, None, edges)


def _dimensions(tenant_id: uuid.UUID, filters: LogFilters, bind: Binder) -> str:
    """The filters as a predicate over the rollups' columns (tenant, action, severity, resource type)."""
    return filter_predicate(tenant_id, msgspec.structs.replace(filters, start_time=None, end_time=None), bind)


def _rollup_parts(tenant_id: uuid.UUID, filters: LogFilters, window: _Window, unit: str, bind: Binder) -> list[str]:
    """The lake's events in the whole hours from the rollups: the first and last day from their hourly counts,
    the days between from the daily ones. Bucketed by day; with hourly buckets the bucket is NULL here (the
    series then comes from :func:`_hour_series`)."""
    assert window.h0 is not None and window.h1 is not None
    last_hour = window.h1 - _HOUR
    first, last = window.h0.date(), last_hour.date()
    dims = _dimensions(tenant_id, filters, bind)
    bucket = "day::timestamp" if unit == "day" else "NULL::timestamp"

    def hours(day: date, lo: int, hi: int) -> str:  # 1-based, inclusive
        n = f"(SELECT coalesce(sum(x), 0) FROM unnest(hours[{lo}:{hi}]) AS x)::int8"
        return (
            f"SELECT {bucket}, action, severity, resource_type, {n} FROM lake_rollup_hours "
            f"WHERE {dims} AND day = {bind(day)}"
        )

    if first == last:
        return [hours(first, window.h0.hour + 1, last_hour.hour + 1)]
    parts = [hours(first, window.h0.hour + 1, 24), hours(last, 1, last_hour.hour + 1)]
    if (last - first).days > 1:
        parts.append(
            f"SELECT {bucket}, action, severity, resource_type, events FROM lake_rollups "
            f"WHERE {dims} AND day > {bind(first)} AND day < {bind(last)}"
        )
    return parts


async def _hour_series(
    pg: asyncpg.Connection, tenant_id: uuid.UUID, filters: LogFilters, window: _Window
) -> Counter[datetime]:
    """The lake's events per whole hour of the window, from the hourly rollups."""
    assert window.h0 is not None and window.h1 is not None
    bind = Binder()
    dims = _dimensions(tenant_id, filters, bind)
    sums = ", ".join(f"sum(hours[{k}])::int8" for k in range(1, 25))
    rows = await pg.fetch(
        f"SELECT day, {sums} FROM lake_rollup_hours WHERE {dims} "
        f"AND day BETWEEN {bind(window.h0.date())} AND {bind((window.h1 - _HOUR).date())} GROUP BY day",
        *bind.args,
    )
    series: Counter[datetime] = Counter()
    for row in rows:
        midnight = datetime.combine(row[0], time.min, tzinfo=UTC)
        for k in range(24):
            bucket = midnight + k * _HOUR
            if row[k + 1] and window.h0 <= bucket < window.h1:
                series[bucket] += row[k + 1]
    return series


def _rows_part(
    tenant_id: uuid.UUID, filters: LogFilters, lo: datetime, hi: datetime, seq: str, unit: str, bind: Binder
) -> str:
    """Events of ``audit_logs`` in ``[lo, hi)`` matching ``filters`` whose ``seq`` satisfies ``seq``."""
    window = msgspec.structs.replace(filters, start_time=lo, end_time=hi - _MICRO)
    where = filter_predicate(tenant_id, window, bind)
    return (
        f"""SELECT date_trunc('{unit}', "timestamp" AT TIME ZONE 'UTC'), action, severity, resource_type, 1::int8 """
        f"FROM audit_logs WHERE {where} AND seq {seq}"
    )


async def _edges_in_postgres(
    pg: asyncpg.Connection, tenant_id: uuid.UUID, edges: tuple[tuple[datetime, datetime], ...], watermark: int
) -> list[bool]:
    """For each edge: does PostgreSQL still hold every lake event of its hour (see the module docstring)?"""
    checks, bind = [], Binder()
    t, wm = bind(tenant_id), bind(watermark)
    for lo, _ in edges:
        hour = lo.replace(minute=0, second=0, microsecond=0)
        start, end = bind(hour), bind(hour + _HOUR)
        # Counted per side of the service-event line: each side has its own time index (migration 0019).
        counts = " + ".join(
            f'(SELECT count(*) FROM audit_logs WHERE tenant_id = {t} AND "timestamp" >= {start} '
            f'AND "timestamp" < {end} AND seq <= {wm} AND {service_clause(side)})'
            for side in (False, True)
        )
        checks.append(
            f"(SELECT coalesce(sum(hours[{bind(hour.hour + 1)}]), 0) FROM lake_rollup_hours "
            f"WHERE tenant_id = {t} AND day = {bind(hour.date())})::int8 = ({counts})"
        )
    row = await pg.fetchrow(f"SELECT {', '.join(checks)}", *bind.args)
    return [bool(v) for v in row]


def _lake_edge(
    store: Any, files: list[Any], filters: LogFilters, lo: datetime, hi: datetime
) -> Counter[tuple[str, ...]]:
    """The lake's events in ``[lo, hi)`` matching ``filters``, counted per (action, severity, resource_type)
    from the files of that UTC day (the writer files each event under the UTC date of its timestamp)."""
    lake = lake_module()
    assert lake is not None
    day = lo.astimezone(UTC).date()
    expression = lake_expression(msgspec.structs.replace(filters, start_time=lo, end_time=hi - _MICRO))
    counts: Counter[tuple[str, ...]] = Counter()
    columns = ["timestamp", *_DIMENSIONS]
    for batch in lake.open_lake_batches(store, [f for f in files if f.date == day], None, columns):
        table = pa.Table.from_batches([batch])
        if expression is not None:
            table = table.filter(expression)
        if not table.num_rows:
            continue
        grouped = table.group_by(list(_DIMENSIONS), use_threads=False).aggregate([([], "count_all")])
        for *key, n in zip(*(grouped.column(c).to_pylist() for c in (*_DIMENSIONS, "count_all")), strict=True):
            counts[tuple(key)] += n
    return counts


def _bucket(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == "day" else moment


async def count_window(
    pg: asyncpg.Connection, tenant_id: uuid.UUID, filters: LogFilters, interval: str, store: Any = None
) -> WindowCounts | None:
    """The counts of ``tenant_id``'s events matching ``filters`` (both time bounds set) by ``interval`` buckets,
    or ``None`` when they cannot be answered from the rollups (see the module docstring). ``pg``: a connection
    of the API role, not in a transaction."""
    if filters.start_time is None or filters.end_time is None:
        raise ValueError("a window needs both time bounds")
    if interval not in ("hour", "day") or not answerable(filters):
        return None
    window = _Window.of(filters.start_time, filters.end_time)
    if not await rollups_ready(pg):
        return None
    out = WindowCounts()
    async with snapshot(pg, tenant_id):
        state = await pg.fetchrow(ROLLUP_STATE, tenant_id)
        watermark, rollup_from = int(state["watermark"]), int(state["rollup_from"])
        if rollup_from > 0:
            return None
        bind = Binder()
        parts = [_rows_part(tenant_id, filters, window.start, window.end, f"> {bind(watermark)}", interval, bind)]
        from_lake: list[tuple[datetime, datetime]] = []
        if watermark > 0:
            if window.h0 is not None:
                parts += _rollup_parts(tenant_id, filters, window, interval, bind)
                if interval == "hour":
                    out.series += await _hour_series(pg, tenant_id, filters, window)
            held = await _edges_in_postgres(pg, tenant_id, window.edges, watermark) if window.edges else []
            for (lo, hi), in_postgres in zip(window.edges, held, strict=True):
                if in_postgres:
                    parts.append(_rows_part(tenant_id, filters, lo, hi, f"<= {bind(watermark)}", interval, bind))
                else:
                    from_lake.append((lo, hi))
        union = "\nUNION ALL\n".join(parts)
        rows = await pg.fetch(
            f"WITH parts (bucket, action, severity, resource_type, n) AS ({union})\n"
            "SELECT bucket, action, severity, resource_type, GROUPING(bucket, action, severity, resource_type) AS g,"
            " sum(n)::int8 AS n FROM parts GROUP BY GROUPING SETS "
            "((), (action), (severity), (resource_type), (bucket))",
            *bind.args,
        )
        files: list[Any] = []
        if from_lake:
            lake = lake_module()
            if lake is None or store is None:
                return None
            _, files = await lake.live_files(pg, tenant_id)
    for row in rows:
        kind, n = _SETS[row["g"]], int(row["n"] or 0)
        if kind == "total":
            out.total += n
        elif kind == "bucket":
            if row["bucket"] is not None:  # None: whole hours of the lake, counted by _hour_series
                out.series[row["bucket"].replace(tzinfo=UTC)] += n
        else:
            getattr(out, f"by_{kind}")[row[kind]] += n
    out.edges_from_lake = len(from_lake)
    for lo, hi in from_lake:
        counts = await asyncio.to_thread(_lake_edge, store, files, filters, lo, hi)
        bucket = _bucket(lo, interval)
        for (action, severity, resource_type), n in counts.items():
            out.add(bucket, action, severity, resource_type, n)
    return out
