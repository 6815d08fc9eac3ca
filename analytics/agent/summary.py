"""The value sets, counts and time range of a tenant's ``events`` for the agent's catalog, without a scan of
the events through the engine.

The catalog used to group every event through DuckDB: with a million events still in PostgreSQL that meant
turning a million rows into Arrow in Python (far past the 10 s statement limit), and over the lake it read
every file on every catalog load. Here each part is counted where it is cheapest, in one snapshot:

- the hot tail (``seq`` above the lake's watermark) by PostgreSQL itself: one ``GROUP BY`` returning a row
  per (action, severity, resource_type) present;
- each live lake file once per process (:class:`FileSummaries`, keyed by its path: lake files never change
  under a name), from its plain columns (no key needed), with pyarrow's ``group_by``.

Service events (read records, ``auditlog.*``) are left out, as ``events`` leaves them out. The parts add up
to exactly what ``SELECT ... FROM events GROUP BY ...`` would return.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from analytics.filters import lake_expression
from analytics.lake_seam import lake_module
from analytics.tail import snapshot
from db.event_filters import SERVICE_EVENTS_SQL, LogFilters

if TYPE_CHECKING:
    import asyncpg

__all__ = ["EventSummary", "FileSummaries", "summarize_events"]

Group = tuple[str, str, str, int, datetime, datetime]
"""(action, severity, resource_type, events, first timestamp, last timestamp)"""

_COLUMNS: Final = ("timestamp", "action", "severity", "resource_type")
_KEYS: Final = ["action", "severity", "resource_type"]
_TAIL: Final = f"""
SELECT action, severity, resource_type, count(*), min("timestamp"), max("timestamp")
FROM audit_logs WHERE tenant_id = $1 AND seq > $2 AND NOT {SERVICE_EVENTS_SQL}
GROUP BY action, severity, resource_type
"""
_NOT_SERVICE: Final = lake_expression(LogFilters())


@dataclass
class EventSummary:
    """Counts of the tenant's events per action, severity and resource type, their total and time range."""

    total: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    actions: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    resource_types: dict[str, int] = field(default_factory=dict)

    def add(self, groups: Iterable[Group]) -> None:
        for action, severity, resource_type, n, first, last in groups:
            self.total += n
            self.actions[action] = self.actions.get(action, 0) + n
            self.severities[severity] = self.severities.get(severity, 0) + n
            self.resource_types[resource_type] = self.resource_types.get(resource_type, 0) + n
            self.first_at = first if self.first_at is None else min(self.first_at, first)
            self.last_at = last if self.last_at is None else max(self.last_at, last)


def _file_groups(store: Any, lake_file: Any) -> list[Group]:
    """One lake file's groups (service events left out), read from its plain columns."""
    lake = lake_module()
    assert lake is not None
    batches = list(lake.open_lake_batches(store, [lake_file], None, _COLUMNS))
    if not batches:
        return []
    table = pa.Table.from_batches(batches)
    if _NOT_SERVICE is not None:
        table = table.filter(_NOT_SERVICE)
    if table.num_rows == 0:
        return []
    grouped = table.group_by(_KEYS).aggregate([("timestamp", "count"), ("timestamp", "min"), ("timestamp", "max")])
    return [
        (r["action"], r["severity"], r["resource_type"], r["timestamp_count"], r["timestamp_min"], r["timestamp_max"])
        for r in grouped.to_pylist()
    ]


class FileSummaries:
    """Each lake file's groups, computed once per process (a file's content never changes under its name)."""

    def __init__(self, max_files: int = 50_000) -> None:
        self.max_files = max_files
        self._groups: dict[tuple[str, str], list[Group]] = {}

    def _compute(self, store: Any, files: list[Any]) -> list[list[Group]]:
        return [_file_groups(store, f) for f in files]

    async def groups(self, store: Any, files: list[Any]) -> list[Group]:
        url = str(getattr(store, "url", ""))
        missing = [f for f in files if (url, f.path) not in self._groups]
        if missing:
            computed = await asyncio.to_thread(self._compute, store, missing)
            if len(self._groups) + len(missing) > self.max_files:
                self._groups.clear()
            for f, groups in zip(missing, computed, strict=True):
                self._groups[(url, f.path)] = groups
        out: list[Group] = []
        for f in files:
            out.extend(self._groups.get((url, f.path)) or _file_groups(store, f))
        return out


async def summarize_events(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, store: Any, files_cache: FileSummaries
) -> EventSummary:
    """The summary of the tenant's ``events`` (``conn``: a read connection, not in a transaction)."""
    summary = EventSummary()
    lake = lake_module()
    async with snapshot(conn, tenant_id):
        if lake is not None and store is not None:
            watermark, files = await lake.live_files(conn, tenant_id)
        else:
            watermark, files = 0, []
        tail = await conn.fetch(_TAIL, tenant_id, int(watermark))
    summary.add((r[0], r[1], r[2], int(r[3]), r[4], r[5]) for r in tail)
    if files:
        summary.add(await files_cache.groups(store, list(files)))
    return summary
