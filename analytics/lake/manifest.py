"""The manifest: which lake files are live for a tenant, and its watermark (the highest seq in the lake).

The manifest is the source of truth. Readers read only listed files, taking the file list and the watermark
in ONE statement (one snapshot), so together with the events ``seq > watermark`` still in PostgreSQL they
see every event exactly once, whatever the export job or compaction is doing at that moment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from db.tenancy import TenantDB, bind_tenant

__all__ = ["LakeFile", "checkpoint_path", "file_path", "live_files", "tenant_prefix"]

_LIVE = """
SELECT coalesce((SELECT w.last_seq FROM lake_watermarks w WHERE w.tenant_id = $1), 0) AS watermark,
       f.path, f.date, f.min_seq, f.max_seq, f.rows, f.bytes
FROM (SELECT 1) one
LEFT JOIN lake_files f ON f.tenant_id = $1 AND f.retired_at IS NULL
ORDER BY f.date, f.min_seq
"""


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One live lake file: ``path`` is relative to the lake root."""

    tenant_id: uuid.UUID
    path: str
    date: date
    min_seq: int
    max_seq: int
    rows: int
    bytes: int


def tenant_prefix(tenant_id: uuid.UUID) -> str:
    return f"tenant_id={tenant_id}/"


def checkpoint_path(tenant_id: uuid.UUID) -> str:
    """The tenant's signed checkpoint covering its lake (C2SP tlog-tiles names it ``checkpoint``): not a data
    file, never listed in the manifest, never collected."""
    return f"tenant_id={tenant_id}/checkpoint"


def file_path(tenant_id: uuid.UUID, day: date, name: str) -> str:
    return f"tenant_id={tenant_id}/date={day.isoformat()}/{name}"


def _parse(tenant_id: uuid.UUID, rows: list[Any]) -> tuple[int, list[LakeFile]]:
    if not rows:
        return 0, []
    files = [
        LakeFile(tenant_id, r["path"], r["date"], r["min_seq"], r["max_seq"], r["rows"], r["bytes"])
        for r in rows
        if r["path"] is not None
    ]
    return int(rows[0]["watermark"]), files


async def live_files(db: TenantDB | asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[int, list[LakeFile]]:
    """The tenant's lake watermark and live files, read in one snapshot.

    ``db`` is a ``TenantDB`` (a read of its own) or an asyncpg connection already bound to ``tenant_id``
    (e.g. inside a REPEATABLE READ transaction that also reads the hot tail ``seq > watermark``, so both
    come from the same snapshot).
    """
    if isinstance(db, TenantDB):
        if db.pool is not None:
            async with db.read(tenant_id) as conn:
                return _parse(tenant_id, await conn.fetch(_LIVE, tenant_id))
        async with db.engine.connect() as sa_conn:
            raw = (await sa_conn.get_raw_connection()).driver_connection
            assert raw is not None
            async with bind_tenant(raw, tenant_id, readonly=True):
                return _parse(tenant_id, await raw.fetch(_LIVE, tenant_id))
    return _parse(tenant_id, await db.fetch(_LIVE, tenant_id))
