"""Running one checked statement in the engine's sandbox, with a row limit and a time limit.

``OpenEvents`` opens the caller's tenant ``events`` (lake plus hot tail, one snapshot) projected to the
columns the statement reads and limited to the time window its ``WHERE`` bounds it to (``CheckedSql.since``/
``until``: the hot tail then reads that window through PostgreSQL's index and the lake only its days); the
caller supplies it, bound to the tenant, so nothing here chooses a tenant.
The result is streamed and cut after ``max_rows`` (one more row is read to know whether it was
``truncated``; leaving the stream early interrupts the query). Values are turned into JSON-ready builtins.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, cast

from analytics.agent.sql_guard import CheckedSql
from analytics.engine import EngineSession
from db.event_filters import LogFilters

__all__ = ["OpenEvents", "QueryResult", "plain", "run_checked"]

OpenEvents = Callable[[tuple[str, ...] | None, LogFilters], contextlib.AbstractAsyncContextManager[EngineSession]]


@dataclass(frozen=True, slots=True)
class QueryResult:
    sql: str
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool

    def as_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def plain(value: Any) -> Any:
    """A DuckDB/Arrow value as a JSON builtin (times as ISO 8601, decimals as numbers, intervals as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)


async def run_checked(open_events: OpenEvents, checked: CheckedSql, *, max_rows: int, time_limit: float) -> QueryResult:
    """Run ``checked`` over the tenant's events: at most ``max_rows`` rows, interrupted after ``time_limit``.
    Raises ``duckdb.Error`` for a failing statement and ``QueryTimeout`` past the limit."""
    columns: list[str] = []
    rows: list[list[Any]] = []
    truncated = False
    async with (
        open_events(checked.columns, LogFilters(start_time=checked.since, end_time=checked.until)) as session,
        contextlib.aclosing(
            cast(AsyncGenerator[Any, None], session.stream(checked.sql, batch_rows=max_rows + 1, time_limit=time_limit))
        ) as stream,
    ):
        async for batch in stream:
            if not columns:
                columns = list(batch.schema.names)
            data = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for row in zip(*data, strict=True):
                if len(rows) >= max_rows:
                    truncated = True
                    break
                rows.append([plain(v) for v in row])
            if truncated:
                break
    return QueryResult(sql=checked.sql, columns=columns, rows=rows, row_count=len(rows), truncated=truncated)
