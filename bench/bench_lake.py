"""Lake export benchmark: rows/s of the lake export against pyarrow's own Parquet write of the same rows.

Run on demand (never in CI): ``uv run --frozen python bench/bench_lake.py [--events N]``. It starts its own
embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``), loads N realistic events into one tenant through
the ingest writer (masking, encryption, seq: the ``POST /logs/bulk`` path; demo-data generator, so about a
third carry metadata or before/after states), then in the same run:

1. the lake export (``analytics.lake.export_tenant``): stream from PostgreSQL in seq order, decrypt each
   payload, write column-encrypted zstd Parquet per day, fsync, list in the manifest; rows/s;
2. the ceiling: the same rows (read back from the lake, decrypted, as one in-memory Arrow table) written by
   ``pyarrow.parquet.write_table`` with zstd and no encryption; rows/s.

Prints both and their ratio (target >= 0.5), plus the process's peak RSS growth during the export.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics.lake import LakeStore, export_tenant, live_files, open_lake_batches  # noqa: E402
from analytics.lake.schema import PROOF_COLUMNS  # noqa: E402
from app.demo_data import demo_events  # noqa: E402
from app.logs.ingest import IngestWriter  # noqa: E402
from app.logs.prepare import prepare_event  # noqa: E402
from app.logs.schemas import EventIn  # noqa: E402
from app.runtime import build_runtime  # noqa: E402
from app.settings import Environment, Settings  # noqa: E402
from app.tenants.service import create_tenant  # noqa: E402
from bench import Stack  # noqa: E402
from db import migrate  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE  # noqa: E402
from db.tenancy import bind_tenant  # noqa: E402
from db.urls import plain_dsn  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(stack: Stack, workdir: Path, events: int, profile: bool = False) -> None:
    settings = Settings(
        env=Environment.test,
        database_url=stack.url(API_ROLE),
        data_dir=workdir / "data",
        master_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        jwt_signing_keys="bench:" + "s" * 48,
        operator_password="bench-operator-password",
        demo_data=False,
        run_worker_in_process=False,
    )
    runtime = await build_runtime(settings)
    dsn = plain_dsn(settings.database_url or "")
    writer = IngestWriter(dsn, runtime.db, runtime.keyrings, max_connections=4)
    await writer.start()
    try:
        tenant = await create_tenant(runtime, "bench-lake")
        tid: uuid.UUID = tenant.id
        started = time.perf_counter()
        now = datetime.now(UTC)
        batch = []
        for raw in demo_events("bench", events, now):
            event = EventIn(**{**raw, "timestamp": datetime.fromisoformat(raw["timestamp"])})
            batch.append(prepare_event(event, tenant_id=tid, actor="bench", now=now))
            if len(batch) == 5000:
                await writer.submit(tid, batch)
                batch = []
        if batch:
            await writer.submit(tid, batch)
        print(f"loaded {events:,} events through the ingest writer in {time.perf_counter() - started:.1f} s")
    finally:
        await writer.stop()

    conn = await asyncpg.connect(dsn)
    store = LakeStore.from_url(str(workdir / "lake"))
    rss_before = _rss_mb()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    result = await export_tenant(conn, store, runtime.keyrings, tid)
    export_seconds = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    rss_growth = _rss_mb() - rss_before
    export_rate = result.rows / export_seconds
    print(f"lake export: {result.rows:,} rows in {export_seconds:.2f} s = {export_rate:,.0f} rows/s "
          f"({result.files} files), peak RSS growth {rss_growth:.0f} MB")  # fmt: skip

    async with bind_tenant(conn, tid, readonly=True):
        ring = await runtime.keyrings.get(conn, tid)
        _, files = await live_files(conn, tid)
    await conn.close()
    table = pa.Table.from_batches(list(open_lake_batches(store, files, ring)))
    ceiling_path = workdir / "ceiling.parquet"
    started = time.perf_counter()
    pq.write_table(table, ceiling_path, compression="zstd")
    ceiling_seconds = time.perf_counter() - started
    ceiling_rate = table.num_rows / ceiling_seconds
    print(f"ceiling, pyarrow write_table (zstd, in-memory table, no encryption): {table.num_rows:,} rows in "
          f"{ceiling_seconds:.2f} s = {ceiling_rate:,.0f} rows/s")  # fmt: skip
    print(f"ratio: {export_rate / ceiling_rate:.3f} (target >= 0.5)")
    total, proof = 0, 0
    for lake_file in files:
        parquet = pq.ParquetFile(store.open_input(lake_file.path))
        total += lake_file.bytes
        indexes = [parquet.schema_arrow.get_field_index(name) for name in PROOF_COLUMNS]  # plain columns only:
        for g in range(parquet.metadata.num_row_groups):  # an encrypted column's metadata needs the key
            proof += sum(parquet.metadata.row_group(g).column(i).total_compressed_size for i in indexes)
    print(f"lake size: {total / max(result.rows, 1):.0f} bytes per event, of which {proof / max(total, 1):.0%} the "
          "verifiable log's columns (payload ciphertext, leaf hash)")  # fmt: skip
    await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="print where the export's time goes (cProfile)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-lake-"))
    stack = Stack(workdir, 1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        asyncio.run(run(stack, workdir, args.events, args.profile))
    finally:
        if stack.embedded is not None:
            stack.embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
