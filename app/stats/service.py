"""Counting a tenant's events in the engine: one scan of ``events`` (lake plus hot tail, filtered like
``GET /logs``) grouped by grouping sets, so total, the three breakdowns and the series agree exactly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from analytics.tenant import open_tenant_events
from app.stats.schemas import SeriesPoint, StatsOut

if TYPE_CHECKING:
    import asyncpg

    from analytics.engine import AnalyticsEngine
    from app.logs.query import LogFilters
    from db.keyring import KeyringStore

__all__ = ["DEFAULT_WINDOW", "MAX_BUCKETS", "bucket_count", "bucket_starts", "count_events"]

DEFAULT_WINDOW: Final = timedelta(days=30)
MAX_BUCKETS: Final = 10_000
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
) -> StatsOut:
    """``filters`` must carry both time bounds (the window)."""
    assert filters.start_time is not None and filters.end_time is not None
    async with open_tenant_events(
        engine, pg, tenant_id, keyrings, filters=filters, columns=_COLUMNS, lake_store=store
    ) as session:
        table = await session.query(_SQL.format(unit=interval))
    total = 0
    groups: dict[str, dict[str, int]] = {"action": {}, "severity": {}, "resource_type": {}}
    series: dict[datetime, int] = {}
    for row in table.to_pylist():
        kind, n = _BY[row["g"]], int(row["n"])
        if kind == "total":
            total = n
        elif kind == "bucket":
            series[row["bucket"].replace(tzinfo=UTC)] = n
        else:
            groups[kind][row[kind]] = n
    points = [
        SeriesPoint(bucket=b, count=series.get(b, 0))
        for b in bucket_starts(filters.start_time, filters.end_time, interval)
    ]

    def ordered(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    return StatsOut(
        total=total,
        by_action=ordered(groups["action"]),
        by_severity=ordered(groups["severity"]),
        by_resource_type=ordered(groups["resource_type"]),
        series=points,
        start_time=filters.start_time,
        end_time=filters.end_time,
        interval=interval,  # type: ignore[arg-type]
    )
