"""Nightly compaction of each day's small lake files into one, and garbage collection, both exactly-once.

For each past UTC day of a tenant with several live files: stream them (decrypting, flat memory) into one
new file ``compact-<min seq>-<max seq>.parquet``, make it durable, then in ONE manifest transaction list it
and retire the files it replaces. Readers see either the small files or the big one, never both, never
neither. A crash before the swap leaves an unlisted file (rewritten under the same name by the next run, or
collected); after it, the retired files are deleted by the collector once ``grace_seconds`` have passed, so
a reader whose snapshot still lists them can finish. Unlisted files (leftovers of crashed runs) are deleted
at once: the collector runs under the tenant's lake lock, so no writer of that tenant is half-way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.parquet as pq

from analytics.lake.keys import lake_encryption_properties
from analytics.lake.manifest import LakeFile, checkpoint_path, file_path, live_files, tenant_prefix
from analytics.lake.reader import open_lake_batches
from analytics.lake.schema import LAKE_SCHEMA
from analytics.lake.writer import ROW_GROUP_ROWS, StagedFile, StepHook, _noop, tenant_lock, write_manifest
from db.tenancy import bind_tenant

if TYPE_CHECKING:
    import asyncpg

    from analytics.lake.store import LakeStore
    from db.crypto import TenantKeyring
    from db.keyring import KeyringStore

__all__ = ["COMPACTION_STEPS", "CompactionResult", "collect_garbage", "compact_tenant"]

log = logging.getLogger(__name__)

COMPACTION_STEPS: Final = ("compact_staged", "compact_durable", "manifest_written", "swapped")
GRACE_SECONDS: Final = 900.0


@dataclass(slots=True)
class CompactionResult:
    tenant_id: uuid.UUID
    days: int = 0
    files_replaced: int = 0
    files_deleted: int = 0
    skipped: bool = False


def _stage_day(store: LakeStore, keyring: TenantKeyring, day: date, files: list[LakeFile]) -> StagedFile:
    staged = StagedFile(day, store.staging_path(), 0, min(f.min_seq for f in files), max(f.max_seq for f in files))
    writer = pq.ParquetWriter(
        staged.staged, LAKE_SCHEMA, compression="zstd", encryption_properties=lake_encryption_properties(keyring)
    )
    try:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in open_lake_batches(store, files, keyring):
            pending.append(batch)
            pending_rows += batch.num_rows
            staged.rows += batch.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending, schema=LAKE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema=LAKE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
    finally:
        writer.close()
    expected = sum(f.rows for f in files)
    if staged.rows != expected:
        staged.staged.unlink(missing_ok=True)
        raise RuntimeError(f"compaction of {day}: read {staged.rows} rows, the manifest lists {expected}")
    return staged


async def compact_tenant(
    conn: asyncpg.Connection,
    store: LakeStore,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    *,
    today: date | None = None,
    min_files: int = 2,
    grace_seconds: float = GRACE_SECONDS,
    wait: bool = False,
    on_step: StepHook = _noop,
) -> CompactionResult:
    """Compact every day before ``today`` (UTC) that has at least ``min_files`` live files, then collect."""
    result = CompactionResult(tenant_id)
    today = today or datetime.now(UTC).date()
    async with tenant_lock(conn, tenant_id, wait=wait) as got:
        if not got:
            result.skipped = True
            return result
        async with bind_tenant(conn, tenant_id, readonly=True):
            watermark, files = await live_files(conn, tenant_id)
            keyring = await keyrings.get(conn, tenant_id)
        by_day: dict[date, list[LakeFile]] = defaultdict(list)
        for f in files:
            if f.date < today:
                by_day[f.date].append(f)
        for day, day_files in sorted(by_day.items()):
            if len(day_files) < min_files:
                continue
            staged = await asyncio.to_thread(_stage_day, store, keyring, day, day_files)
            try:
                staged.path = file_path(tenant_id, day, f"compact-{staged.min_seq:012d}-{staged.max_seq:012d}.parquet")
                on_step("compact_staged")
                staged.bytes = await store.commit(staged.staged, staged.path)
                on_step("compact_durable")
            finally:
                staged.staged.unlink(missing_ok=True)
            await write_manifest(
                conn,
                tenant_id,
                [staged],
                expected_watermark=watermark,
                retire=[f.path for f in day_files],
                on_step=on_step,
            )
            on_step("swapped")
            result.days += 1
            result.files_replaced += len(day_files)
        result.files_deleted = await _collect(conn, store, tenant_id, grace_seconds)
    if result.days or result.files_deleted:
        log.info("lake compaction: tenant %s, %d days (%d files), %d files deleted", tenant_id, result.days,
                 result.files_replaced, result.files_deleted)  # fmt: skip
    return result


async def collect_garbage(
    conn: asyncpg.Connection, store: LakeStore, tenant_id: uuid.UUID, *, grace_seconds: float = GRACE_SECONDS
) -> int:
    """Delete the tenant's unlisted files and its files retired more than ``grace_seconds`` ago."""
    async with tenant_lock(conn, tenant_id, wait=True):
        return await _collect(conn, store, tenant_id, grace_seconds)


async def _collect(conn: asyncpg.Connection, store: LakeStore, tenant_id: uuid.UUID, grace_seconds: float) -> int:
    async with bind_tenant(conn, tenant_id, readonly=True):
        rows = await conn.fetch("SELECT path, retired_at FROM lake_files WHERE tenant_id = $1", tenant_id)
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    listed = {r["path"] for r in rows}
    expired = [r["path"] for r in rows if r["retired_at"] is not None and r["retired_at"] <= cutoff]
    present = await store.list(tenant_prefix(tenant_id))
    unlisted = [p for p in present if p not in listed and p != checkpoint_path(tenant_id)]
    await store.delete(unlisted + expired)
    if expired:
        async with bind_tenant(conn, tenant_id):
            await conn.execute(
                "DELETE FROM lake_files WHERE tenant_id = $1 AND path = ANY($2::text[]) AND retired_at IS NOT NULL",
                tenant_id,
                expired,
            )
    await store.clear_staging(older_than_seconds=max(grace_seconds, 3600.0))
    return len(unlisted) + len(expired)
