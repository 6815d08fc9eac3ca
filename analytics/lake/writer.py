"""The lake export: a tenant's newly committed events (``seq`` above its watermark) → zstd Parquet, exactly once.

One run of one tenant, in order (``EXPORT_STEPS`` names the points between them; tests crash there):

1. read the watermark ``w``, the tenant's committed ``last_seq`` and its Merkle tree's size ``t`` (if the
   verifiable log has a tree for the tenant); the run covers ``(w, h]`` with
   ``h = min(last_seq, t, w + run_rows)``. Every event with ``seq <= last_seq`` is committed (``seq`` is taken
   under a row lock released at commit), and seqs are dense, so the run must read exactly ``h - w`` rows.
   Stopping at the tree's size means the lake only ever holds integrated events: retention, which removes
   only what the lake holds, cannot remove an event before it is a leaf, and the lake ends at a checkpoint;
2. read them in ``seq`` order, ``batch_rows`` at a time, column by column (``analytics.lake.pg_batches``:
   PostgreSQL folds each column of a batch into one value, the payloads are decrypted with the tenant's
   keyring), and append each UTC day's rows to that day's staging file (column-encrypted,
   ``analytics.lake.keys``), written by a thread of its own while the next batch is read and decrypted;
   memory holds a few batches whatever the volume;
3. make each file durable under its deterministic name ``tenant_id=…/date=…/events-<min seq>-<max seq>.parquet``
   (a re-run of the same range rewrites the same names instead of adding files);
4. in ONE transaction: list the files in the manifest and move the watermark to ``h``.

Each row carries its stored payload ciphertext and its Merkle leaf hash (``schema.PROOF_COLUMNS``: the
tree's own, from its level-0 tiles, or computed with ``db.leaf`` where the tree does not reach), and after
the runs the tenant's signed checkpoint at the watermark is written beside its files
(``manifest.checkpoint_path``), so ``auditlog verify`` can check the tenant's lake folder offline.

A crash before 4 commits leaves unlisted files, invisible to readers and rewritten or garbage-collected
later; the next run starts again from ``w``. A crash after leaves nothing to redo. A per-tenant advisory lock
keeps two exporters (or an exporter and compaction) of one tenant apart, and the commit re-checks the
watermark it started from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analytics.lake.keys import lake_encryption_properties
from analytics.lake.manifest import checkpoint_path, file_path
from analytics.lake.pg_batches import BATCH_SQL, MAX_BATCH_ROWS, columns_to_batch, tile_range
from analytics.lake.rollups import HourCounts, backfill_rollups, write_rollups
from analytics.lake.schema import LAKE_SCHEMA
from db.tenancy import bind_tenant

if TYPE_CHECKING:
    from analytics.lake.store import LakeStore
    from db.crypto import TenantKeyring
    from db.keyring import KeyringStore

__all__ = [
    "EXPORT_STEPS",
    "ConcurrentLakeWrite",
    "ExportResult",
    "StepHook",
    "export_tenant",
    "tenant_lock",
    "write_manifest",
]

log = logging.getLogger(__name__)

StepHook = Callable[[str], None]
EXPORT_STEPS: Final = ("batch_read", "file_staged", "file_durable", "manifest_written", "committed")
LOCK_CLASS: Final = 0x6C616B65  # "lake": advisory lock space of lake writers (key 2: the tenant)
ROW_GROUP_ROWS: Final = 131_072
_DAY_US: Final = 86_400_000_000
_EPOCH: Final = date(1970, 1, 1)

_STATE = """
SELECT coalesce((SELECT last_seq FROM lake_watermarks WHERE tenant_id = $1), 0),
       coalesce((SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1), 0),
       (SELECT size FROM merkle_trees WHERE tenant_id = $1)
"""
_CHECKPOINT = """
SELECT note FROM merkle_checkpoints WHERE tenant_id = $1 AND tree_size <= $2 ORDER BY tree_size DESC LIMIT 1
"""
_LOCK_WATERMARK = "SELECT coalesce((SELECT last_seq FROM lake_watermarks WHERE tenant_id = $1 FOR UPDATE), 0)"
_LIST_FILES = """
INSERT INTO lake_files (tenant_id, path, date, min_seq, max_seq, rows, bytes)
SELECT $1, u.path, u.date, u.min_seq, u.max_seq, u.rows, u.bytes
FROM unnest($2::text[], $3::date[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
  AS u(path, date, min_seq, max_seq, rows, bytes)
"""
_MOVE_WATERMARK = """
INSERT INTO lake_watermarks (tenant_id, last_seq) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now()
"""


class ConcurrentLakeWrite(Exception):
    """The watermark moved under this run (another writer): nothing was listed; the run's files are garbage."""


@dataclass(slots=True)
class ExportResult:
    tenant_id: uuid.UUID
    rows: int = 0
    files: int = 0
    watermark: int = 0
    skipped: bool = False
    """Another exporter of this tenant held the lock (``wait=False``)."""


@dataclass(slots=True)
class StagedFile:
    day: date
    staged: Path
    rows: int
    min_seq: int
    max_seq: int
    path: str = ""
    bytes: int = 0


def _noop(step: str) -> None:
    return None


@contextlib.asynccontextmanager
async def tenant_lock(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, wait: bool) -> Any:
    """The tenant's lake-writer lock on ``conn`` (session level); yields whether it was taken."""
    if wait:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, str(tenant_id))
        got = True
    else:
        got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, str(tenant_id)))
    try:
        yield got
    finally:
        if got:
            await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, str(tenant_id))


def batch_days(batch: pa.RecordBatch) -> list[tuple[date, pa.RecordBatch]]:
    """Split a batch by the UTC date of ``timestamp`` (rows keep their order)."""
    micros = batch.column("timestamp").cast(pa.int64())
    days = pc.floor(pc.divide(micros.cast(pa.float64()), float(_DAY_US))).cast(pa.int64())
    first, last = pc.min_max(days).values()
    if first == last:
        return [(_EPOCH + timedelta(days=first.as_py()), batch)]
    if batch.num_rows > 1 and pc.all(pc.less_equal(days[:-1], days[1:])).as_py():
        # days in order (events arriving in time order): zero-copy slices instead of filtered copies
        starts = pc.indices_nonzero(pc.not_equal(days[1:], days[:-1])).to_pylist()
        bounds = [0, *(i + 1 for i in starts), batch.num_rows]
        return [
            (_EPOCH + timedelta(days=days[a].as_py()), batch.slice(a, b - a)) for a, b in itertools.pairwise(bounds)
        ]
    return [(_EPOCH + timedelta(days=d), batch.filter(pc.equal(days, d))) for d in sorted(pc.unique(days).to_pylist())]


def _convert_and_add(days: DayFiles, row: Sequence[Any], lo: int, hi: int, keyring: TenantKeyring) -> None:
    days.add(columns_to_batch(row, lo, hi, keyring))


@dataclass
class DayFiles:
    """One staging Parquet file per UTC day of a run, fed batch by batch (row groups of ``ROW_GROUP_ROWS``).

    Row groups are encoded, compressed and encrypted by one writer thread (pyarrow releases the GIL there) while
    the caller prepares the next batches; at most one row group is in flight, so memory stays bounded, and a
    writer's error surfaces at the next flush or at ``close``."""

    store: LakeStore
    keyring: TenantKeyring
    row_group_rows: int = ROW_GROUP_ROWS
    files: dict[date, StagedFile] = field(default_factory=dict)
    counts: HourCounts = field(default_factory=HourCounts)
    """The rows added, counted per hour (``analytics.lake.rollups``), listed with the files."""
    _writers: dict[date, pq.ParquetWriter] = field(default_factory=dict)
    _pending: dict[date, list[pa.RecordBatch]] = field(default_factory=dict)
    _pending_rows: dict[date, int] = field(default_factory=dict)
    _thread: ThreadPoolExecutor | None = None
    _writing: Future[None] | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        self.counts.add(batch)
        for day, part in batch_days(batch):
            seqs = part.column("seq")
            lo, hi = pc.min_max(seqs).values()
            staged = self.files.get(day)
            if staged is None:
                staged = self.files[day] = StagedFile(day, self.store.staging_path(), 0, lo.as_py(), hi.as_py())
            staged.rows += part.num_rows
            staged.min_seq = min(staged.min_seq, lo.as_py())
            staged.max_seq = max(staged.max_seq, hi.as_py())
            self._pending.setdefault(day, []).append(part)
            self._pending_rows[day] = self._pending_rows.get(day, 0) + part.num_rows
            if self._pending_rows[day] >= self.row_group_rows:
                self._flush(day)
        if sum(self._pending_rows.values()) >= 2 * self.row_group_rows:
            for day in list(self._pending):
                self._flush(day)

    def _flush(self, day: date) -> None:
        batches = self._pending.pop(day, [])
        self._pending_rows.pop(day, None)
        if not batches:
            return
        table = pa.Table.from_batches(batches, schema=LAKE_SCHEMA)
        self._wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="lake-writer")
        self._writing = self._thread.submit(functools.partial(self._write, day, table))

    def _write(self, day: date, table: pa.Table) -> None:
        """In the writer thread: one row group into the day's file."""
        writer = self._writers.get(day)
        if writer is None:
            writer = self._writers[day] = pq.ParquetWriter(
                self.files[day].staged,
                LAKE_SCHEMA,
                compression="zstd",
                encryption_properties=lake_encryption_properties(self.keyring),
            )
        writer.write_table(table, row_group_size=self.row_group_rows)

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _stop(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    def close(self) -> list[StagedFile]:
        try:
            for day in list(self._pending):
                self._flush(day)
            self._wait()
        finally:
            self._stop()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return sorted(self.files.values(), key=lambda f: (f.day, f.min_seq))

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._wait()
        self._stop()
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
        for staged in self.files.values():
            staged.staged.unlink(missing_ok=True)


async def write_manifest(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    files: Sequence[StagedFile],
    *,
    expected_watermark: int,
    new_watermark: int | None = None,
    retire: Sequence[str] = (),
    rollups: HourCounts | None = None,
    on_step: StepHook = _noop,
) -> None:
    """List ``files`` (and retire ``retire``), add ``rollups`` (the listed rows' counts) and, if given, move the
    watermark: one transaction."""
    async with bind_tenant(conn, tenant_id):
        current = await conn.fetchval(_LOCK_WATERMARK, tenant_id)
        if current != expected_watermark:
            raise ConcurrentLakeWrite(f"tenant {tenant_id}: watermark is {current}, expected {expected_watermark}")
        if retire:
            retired = await conn.execute(
                "UPDATE lake_files SET retired_at = now() WHERE tenant_id = $1 AND path = ANY($2::text[])"
                " AND retired_at IS NULL",
                tenant_id,
                list(retire),
            )
            if retired != f"UPDATE {len(retire)}":
                raise ConcurrentLakeWrite(f"tenant {tenant_id}: the files to replace are no longer all live")
        await conn.execute(
            _LIST_FILES,
            tenant_id,
            [f.path for f in files],
            [f.day for f in files],
            [f.min_seq for f in files],
            [f.max_seq for f in files],
            [f.rows for f in files],
            [f.bytes for f in files],
        )
        if rollups is not None:
            await write_rollups(conn, tenant_id, rollups)
        on_step("manifest_written")
        if new_watermark is not None:
            await conn.execute(_MOVE_WATERMARK, tenant_id, new_watermark)


async def _export_run(
    conn: asyncpg.Connection,
    store: LakeStore,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    *,
    batch_rows: int,
    run_rows: int,
    on_step: StepHook,
) -> tuple[int, int, int]:
    """One run (steps 1-4); returns (rows, files, watermark)."""
    async with bind_tenant(conn, tenant_id, readonly=True):
        row = await conn.fetchrow(_STATE, tenant_id)
        keyring = await keyrings.get(conn, tenant_id)
    watermark, last_seq = int(row[0]), int(row[1])
    high = min(last_seq, watermark + run_rows, last_seq if row[2] is None else int(row[2]))
    if high <= watermark:
        return 0, 0, watermark
    days = DayFiles(store, keyring)
    read = 0
    step = max(1, min(batch_rows, MAX_BATCH_ROWS))
    ranges = [(lo, min(lo + step, high)) for lo in range(watermark, high, step)]

    def fetch(lo: int, hi: int) -> asyncio.Future[Any]:
        return asyncio.ensure_future(conn.fetchrow(BATCH_SQL, tenant_id, lo, hi, *tile_range(lo, hi)))

    try:
        async with bind_tenant(conn, tenant_id, readonly=True):
            following: asyncio.Future[Any] | None = fetch(*ranges[0])
            for k, (lo, hi) in enumerate(ranges):
                assert following is not None
                row = await following
                # PostgreSQL produces the next batch while this one is decrypted and written
                following = fetch(*ranges[k + 1]) if k + 1 < len(ranges) else None
                try:
                    await asyncio.to_thread(_convert_and_add, days, row, lo, hi, keyring)
                    read += hi - lo
                    on_step("batch_read")
                except BaseException:
                    if following is not None:
                        following.cancel()
                        with contextlib.suppress(BaseException):
                            await following
                    raise
        if read != high - watermark:
            raise RuntimeError(
                f"tenant {tenant_id}: read {read} events for seq ({watermark}, {high}]; expected {high - watermark}"
            )
        staged = await asyncio.to_thread(days.close)
    except BaseException:
        await asyncio.to_thread(days.discard)
        raise
    try:
        for f in staged:
            f.path = file_path(tenant_id, f.day, f"events-{f.min_seq:012d}-{f.max_seq:012d}.parquet")
        # durable in two halves, so that a crash can fall between files that are durable and files that are not
        half = (len(staged) + 1) // 2
        for part in (staged[:half], staged[half:]):
            if not part:
                continue
            on_step("file_staged")
            sizes = await store.commit_many([(f.staged, f.path) for f in part])
            for f, size in zip(part, sizes, strict=True):
                f.bytes = size
            on_step("file_durable")
    finally:
        for f in staged:
            f.staged.unlink(missing_ok=True)
    await write_manifest(
        conn, tenant_id, staged, expected_watermark=watermark, new_watermark=high, rollups=days.counts, on_step=on_step
    )
    on_step("committed")
    return read, len(staged), high


async def _write_checkpoint(conn: asyncpg.Connection, store: LakeStore, tenant_id: uuid.UUID, watermark: int) -> None:
    """Put the tenant's latest signed checkpoint within the lake (tree size <= watermark) beside its files. Only
    a convenience for the offline verifier (it trusts the signature, not the file): a failure is logged and
    the next export that adds rows writes it again."""
    async with bind_tenant(conn, tenant_id, readonly=True):
        note = await conn.fetchval(_CHECKPOINT, tenant_id, watermark)
    if note is None:
        return
    try:
        await store.put(checkpoint_path(tenant_id), note.encode())
    except Exception:
        log.warning("lake export: tenant %s, the checkpoint file could not be written", tenant_id, exc_info=True)


async def export_tenant(
    conn: asyncpg.Connection,
    store: LakeStore,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    *,
    wait: bool = False,
    batch_rows: int = 20_000,
    run_rows: int = 500_000,
    on_step: StepHook = _noop,
) -> ExportResult:
    """Export everything the tenant committed so far, up to its Merkle tree's size when it has a tree (several
    runs of at most ``run_rows`` events), then write its checkpoint beside the files.

    ``conn`` is a dedicated connection of the API role (it holds the tenant's session-level lake lock).
    ``wait=False`` skips the tenant when another exporter holds its lock.
    """
    result = ExportResult(tenant_id)
    async with tenant_lock(conn, tenant_id, wait=wait) as got:
        if not got:
            result.skipped = True
            return result
        await backfill_rollups(conn, store, tenant_id)
        while True:
            rows, files, watermark = await _export_run(
                conn, store, keyrings, tenant_id, batch_rows=batch_rows, run_rows=run_rows, on_step=on_step
            )
            result.rows += rows
            result.files += files
            result.watermark = watermark
            if rows == 0:
                break
        if result.rows:
            await _write_checkpoint(conn, store, tenant_id, result.watermark)
    if result.rows:
        log.info("lake export: tenant %s, %d events in %d files, watermark %d", tenant_id, result.rows,
                 result.files, result.watermark)  # fmt: skip
    return result
