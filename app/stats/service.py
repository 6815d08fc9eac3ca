"""Counting a tenant's events in a window, exactly: from the lake's hourly rollups plus PostgreSQL when the
filters are ones the rollups keep (``analytics.window_counts``: time, action, severity, resource type), else
(and for ``breakdown``) in the engine: one scan of ``events`` (lake plus hot tail, filtered like ``GET /logs``)
grouped by grouping sets, so total, the three breakdowns and the series agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from analytics.tenant import open_tenant_events
from analytics.window_counts import WindowCounts, count_window
from app.stats.schemas import SeriesPoint, StatsOut

if TYPE_CHECKING:
    import asyncpg

    from analytics.engine import AnalyticsEngine
    from app.logs.query import LogFilters
    from db.keyring import KeyringStore

__all__ = ["DEFAULT_WINDOW", "MAX_BUCKETS", "TOP_USERS", "bucket_count", "bucket_starts", "count_events"]

DEFAULT_WINDOW: Final = timedelta(days=30)
MAX_BUCKETS: Final = 10_000
TOP_USERS: Final = 10
_STEP: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_COLUMNS: Final = ("timestamp", "action", "resource_type", "severity")

_SQL: Final = """
SELECT action, severity, resource_type, date_trunc('{unit}', "timestamp"::TIMESTAMP) AS bucket,
       GROUPING(action, severity, resource_type, bucket) AS g, count(*) AS n
FROM events
GROUP BY GROUPING SETS ((), (action), (severity), (resource_type), (bucket))
"""
# GROUPING bits, leftmost argument highest: 0b0111 = grouped by action only, and so on.
_BY: Final = {0b0111: "action", 0b1011: "severity", 0b1101: "resource_type", 0b1110: "bucket", 0b1111: "total"}
# ``breakdown=true``: the same scan with two more grouping sets, the users and (severity, bucket).
_BREAKDOWN_COLUMNS: Final = (*_COLUMNS, "user_id")
_BREAKDOWN_SQL: Final = """
SELECT action, severity, resource_type, date_trunc('{unit}', "timestamp"::TIMESTAMP) AS bucket, user_id,
       GROUPING(action, severity, resource_type, bucket, user_id) AS g, count(*) AS n
FROM events
GROUP BY GROUPING SETS ((), (action), (severity), (resource_type), (bucket), (user_id), (severity, bucket))
"""
_BREAKDOWN_BY: Final = {
    0b01111: "action",
    0b10111: "severity",
    0b11011: "resource_type",
    0b11101: "bucket",
    0b11110: "user_id",
    0b10101: "severity_bucket",
    0b11111: "total",
}


def _floor(ts: datetime, interval: str) -> datetime:
    ts = ts.astimezone(UTC)
    return (
        ts.replace(minute=0, second=0, microsecond=0)
        if interval == "hour"
        else ts.replace(hour=0, minute=0, second=0, microsecond=0)
    )


def bucket_starts(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Every bucket start from the one holding ``start`` to the one holding ``end``."""
    step, at, last = _STEP[interval], _floor(start, interval), _floor(end, interval)
    out = []
    while at <= last:
        out.append(at)
        at += step
    return out


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


def _from_counts(counts: WindowCounts, filters: LogFilters, interval: str) -> StatsOut:
    assert filters.start_time is not None and filters.end_time is not None
    return StatsOut(
        total=counts.total,
        by_action=_ordered(counts.by_action),
        by_severity=_ordered(counts.by_severity),
        by_resource_type=_ordered(counts.by_resource_type),
        series=[
            SeriesPoint(bucket=b, count=counts.series.get(b, 0))
            for b in bucket_starts(filters.start_time, filters.end_time, interval)
        ],
        start_time=filters.start_time,
        end_time=filters.end_time,
        interval=interval,  # type: ignore[arg-type]
    )


def bucket_count(start: datetime, end: datetime, interval: str) -> int:
    return int((_floor(end, interval) - _floor(start, interval)) / _STEP[interval]) + 1


async def count_events(
    engine: AnalyticsEngine,
    pg: asyncpg.Connection,
    tenant_id: uuid.UUID,
    keyrings: KeyringStore,
    store: Any,
    *,
    filters: LogFilters,
    interval: str,
    breakdown: bool = False,
) -> StatsOut:
    """``filters`` must carry both time bounds (the window). ``breakdown`` adds ``by_user`` and
    ``series_by_severity`` from the same scan."""
    assert filters.start_time is not None and filters.end_time is not None
    # Whole hours of the lake from its hourly rollups, the rest from PostgreSQL, when the filters allow.
    if not breakdown:  # by_user needs per-user counts, which the rollups do not keep
        counts = await count_window(pg, tenant_id, filters, interval, store)
        if counts is not None:
            return _from_counts(counts, filters, interval)
    columns, sql, by = (_BREAKDOWN_COLUMNS, _BREAKDOWN_SQL, _BREAKDOWN_BY) if breakdown else (_COLUMNS, _SQL, _BY)
    async with open_tenant_events(
        engine, pg, tenant_id, keyrings, filters=filters, columns=columns, lake_store=store
    ) as session:
        table = await session.query(sql.format(unit=interval))
    total = 0
    groups: dict[str, dict[str, int]] = {"action": {}, "severity": {}, "resource_type": {}, "user_id": {}}
    series: dict[datetime, int] = {}
    by_severity: dict[str, dict[datetime, int]] = {}
    for row in table.to_pylist():
        kind, n = by[row["g"]], int(row["n"])
        if kind == "total":
            total = n
        elif kind == "bucket":
            series[row["bucket"].replace(tzinfo=UTC)] = n
        elif kind == "severity_bucket":
            by_severity.setdefault(row["severity"], {})[row["bucket"].replace(tzinfo=UTC)] = n
        elif kind != "user_id" or row["user_id"] is not None:
            groups[kind][row[kind]] = n
    buckets = bucket_starts(filters.start_time, filters.end_time, interval)
    points = [SeriesPoint(bucket=b, count=series.get(b, 0)) for b in buckets]

    def ordered(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    extra: dict[str, Any] = {}
    if breakdown:
        extra["by_user"] = dict(list(ordered(groups["user_id"]).items())[:TOP_USERS])
        extra["series_by_severity"] = {
            severity: [counts.get(b, 0) for b in buckets] for severity, counts in sorted(by_severity.items())
        }
    return StatsOut(
        total=total,
        by_action=ordered(groups["action"]),
        by_severity=ordered(groups["severity"]),
        by_resource_type=ordered(groups["resource_type"]),
        series=points,
        start_time=filters.start_time,
        end_time=filters.end_time,
        interval=interval,  # type: ignore[arg-type]
        **extra,
    )
