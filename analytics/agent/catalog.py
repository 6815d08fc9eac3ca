"""What the agent knows about the caller's ``events``, read from the engine, never hard-coded in a prompt.

The columns and their types come from ``analytics.schema``; the value sets of ``action``, ``severity`` and
``resource_type`` (with counts), the time range held and the event count from ``summary`` (PostgreSQL's own
grouping of the hot tail plus each lake file's counts, kept per file: no scan of the events through the
engine); the metadata keys from a bounded sample (up to 2,000 rows carrying metadata, from the last day of
events held; skipped if it runs past its time limit). The
result is rendered into the model's instructions as prose plus one ``Schema:`` JSON line, which the offline
model reads back the same way a hosted model reads the prose.

Catalogs are cached per tenant for a short while (``CatalogCache``): a conversation's questions come seconds
apart, and the scan is the most expensive part of answering one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from analytics.agent.summary import EventSummary
from analytics.engine import QueryTimeout
from analytics.schema import EVENT_SCHEMA

__all__ = ["Catalog", "CatalogCache", "load_catalog"]

log = logging.getLogger("auditlog.agent")

MAX_VALUES: Final = 100
METADATA_SAMPLE: Final = 2_000
SCHEMA_MARKER: Final = "Schema: "

_KEYS_SQL: Final = f"""
SELECT k, count(*) AS n FROM (
  SELECT unnest(json_keys(metadata)) AS k
  FROM (SELECT metadata FROM events WHERE metadata IS NOT NULL AND json_type(metadata) = 'OBJECT'
        LIMIT {METADATA_SAMPLE})
) GROUP BY k ORDER BY n DESC, k LIMIT {MAX_VALUES}
"""

RunQuery = Callable[[str, tuple[str, ...], datetime | None], Awaitable[list[dict[str, Any]]]]
"""Runs trusted SQL over the tenant's ``events`` projected to the given columns (only events at or after the
given time, when one is given: the filter reaches PostgreSQL and the lake's file pruning); returns the rows."""
Summarize = Callable[[], Awaitable[EventSummary]]
"""The tenant's value sets, counts and time range (``analytics.agent.summary.summarize_events``)."""
SAMPLE_WINDOW: Final = timedelta(days=1)
"""Metadata keys are sampled from the last day of events held (a bounded read, however many events)."""


@dataclass(frozen=True)
class Catalog:
    total: int = 0
    first_at: str | None = None
    last_at: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    resource_types: dict[str, int] = field(default_factory=dict)
    metadata_keys: list[str] = field(default_factory=list)

    def columns(self) -> list[tuple[str, str]]:
        return [(f.name, _duck_type(f.type)) for f in EVENT_SCHEMA]

    def to_json(self) -> str:
        data = {
            "view": "events",
            "columns": dict(self.columns()),
            "total": self.total,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "actions": self.actions,
            "severities": self.severities,
            "resource_types": self.resource_types,
            "metadata_keys": self.metadata_keys,
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_text(cls, text: str | None) -> Catalog:
        """The catalog rendered into instructions by :meth:`describe` (empty when absent)."""
        for line in (text or "").splitlines():
            if line.startswith(SCHEMA_MARKER):
                data = json.loads(line[len(SCHEMA_MARKER) :])
                return cls(
                    total=int(data.get("total", 0)),
                    first_at=data.get("first_at"),
                    last_at=data.get("last_at"),
                    actions=dict(data.get("actions", {})),
                    severities=dict(data.get("severities", {})),
                    resource_types=dict(data.get("resource_types", {})),
                    metadata_keys=list(data.get("metadata_keys", [])),
                )
        return cls()

    def describe(self) -> str:
        cols = ", ".join(f"{name} {kind}" for name, kind in self.columns())
        held = f"{self.total} events from {self.first_at} to {self.last_at}" if self.total else "no events yet"
        return "\n".join(
            [
                f"The view `events` ({cols}) holds {held}.",
                f"action values (with counts): {_values(self.actions)}.",
                f"severity values: {_values(self.severities)}.",
                f"resource_type values: {_values(self.resource_types)}.",
                f"metadata keys seen: {', '.join(self.metadata_keys) or 'none'}.",
                SCHEMA_MARKER + self.to_json(),
            ]
        )


def _values(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"


def _duck_type(t: Any) -> str:
    text = str(t)
    if text.startswith("timestamp"):
        return "TIMESTAMPTZ (UTC)"
    return {"string": "VARCHAR", "int64": "BIGINT"}.get(text, text.upper())


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VALUES])


async def load_catalog(run: RunQuery, summarize: Summarize) -> Catalog:
    """The catalog of the tenant behind ``run`` and ``summarize`` (the summary, then a metadata sample)."""
    summary = await summarize()
    newest = summary.last_at
    keys: list[str] = []
    if isinstance(newest, datetime):
        try:
            keys = [str(r["k"]) for r in await run(_KEYS_SQL, ("metadata",), newest - SAMPLE_WINDOW)]
        except QueryTimeout:
            log.warning("metadata keys not sampled: the sample ran past its time limit")
    return Catalog(
        total=summary.total,
        first_at=_iso(summary.first_at),
        last_at=_iso(newest),
        actions=_ordered(summary.actions),
        severities=_ordered(summary.severities),
        resource_types=_ordered(summary.resource_types),
        metadata_keys=keys,
    )


class CatalogCache:
    """Per-tenant catalogs for ``ttl`` seconds (per process)."""

    def __init__(self, ttl: float = 30.0, max_tenants: int = 1_000) -> None:
        self.ttl = ttl
        self.max_tenants = max_tenants
        self._entries: dict[uuid.UUID, tuple[float, Catalog]] = {}

    async def get(self, tenant_id: uuid.UUID, run: RunQuery, summarize: Summarize) -> Catalog:
        now = time.monotonic()
        hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        catalog = await load_catalog(run, summarize)
        if len(self._entries) >= self.max_tenants:
            self._entries.clear()
        self._entries[tenant_id] = (now, catalog)
        return catalog
