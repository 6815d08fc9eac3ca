"""The lake half of a tenant's ``events``: the files listed in the manifest and its watermark, read through
E1's ``analytics.lake`` (``live_files``, ``open_lake_batches``).

Until that module is present in the tree the lake is empty (watermark 0, no files), so ``events`` is the
whole of PostgreSQL; nothing else changes when it arrives. Files are pruned by their ``date`` partition
against the filters' time window, and every batch is filtered (``analytics.filters.lake_expression``)
before DuckDB sees it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from analytics.filters import filter_columns, lake_dates, lake_expression
from analytics.schema import SENSITIVE_COLUMNS, project

if TYPE_CHECKING:
    from db.crypto import TenantKeyring
    from db.event_filters import LogFilters

__all__ = ["BATCH_ROWS", "LakeSnapshot", "lake_batches", "lake_module", "read_lake_snapshot"]

BATCH_ROWS: Final = 16_384
"""Rows per lake batch handed to DuckDB. Each batch is decoded, filtered and cast (a copy or two) while DuckDB
holds the ones it is working on, so this sets the read's working set, not its throughput: 65,536-row batches
of real events held about twice the Arrow memory (122 against 59 MB at the peak of a 900k-row export)."""


def lake_module() -> Any | None:
    """E1's ``analytics.lake`` when it exists in this tree."""
    try:
        return importlib.import_module("analytics.lake")
    except ImportError:
        return None


@dataclass(frozen=True)
class LakeSnapshot:
    """The lake as the manifest listed it at one moment: its watermark (highest ``seq`` in the lake) and files."""

    watermark: int = 0
    files: list[Any] = field(default_factory=list)
    store: Any = None


async def read_lake_snapshot(db: Any, tenant_id: uuid.UUID, store: Any = None) -> LakeSnapshot:
    """The tenant's lake watermark and live files (one snapshot: they agree)."""
    lake = lake_module()
    if lake is None or store is None:
        return LakeSnapshot()
    watermark, files = await lake.live_files(db, tenant_id)
    return LakeSnapshot(watermark=int(watermark), files=list(files), store=store)


def _in_window(file: Any, filters: LogFilters) -> bool:
    """Whether ``file`` may hold matching rows: its ``date`` partition against the time filters, its ``seq``
    range against the position bounds."""
    min_seq, max_seq = getattr(file, "min_seq", None), getattr(file, "max_seq", None)
    if filters.seq_after is not None and max_seq is not None and max_seq <= filters.seq_after:
        return False
    if filters.seq_through is not None and min_seq is not None and min_seq > filters.seq_through:
        return False
    lo, hi = lake_dates(filters)
    day = getattr(file, "date", None)
    if day is None:
        return True
    return (lo is None or day >= lo) and (hi is None or day <= hi)


def lake_batches(
    snapshot: LakeSnapshot, keyring: TenantKeyring | None, filters: LogFilters, columns: tuple[str, ...] | None
) -> Iterator[pa.RecordBatch]:
    """The lake's matching rows projected to ``columns``, batch by batch (flat memory: one row group's bytes and
    a batch or two of ``BATCH_ROWS`` rows, whatever the lake's size)."""
    lake = lake_module()
    files = [f for f in snapshot.files if _in_window(f, filters)]
    if lake is None or not files:
        return
    schema = project(columns)
    wanted = set(schema.names) | filter_columns(filters)
    read = [n for n in project(None).names if n in wanted]
    ring = keyring if any(c in SENSITIVE_COLUMNS for c in read) else None
    expression = lake_expression(filters)
    for batch in lake.open_lake_batches(snapshot.store, files, ring, read, batch_rows=BATCH_ROWS):
        out = batch.filter(expression) if expression is not None else batch
        if out.num_rows:
            yield pa.record_batch([out.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema)
