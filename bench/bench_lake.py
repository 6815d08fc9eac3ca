"""Lake export benchmark: rows/s of the lake export against pyarrow's own Parquet write of the same rows.

Run on demand (never in CI): ``uv run --frozen python bench/bench_lake.py [--events N] [--rounds R]``. It starts
its own embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``), loads N realistic events into one tenant through
the ingest writer (masking, encryption, seq: the ``POST /logs/bulk`` path; demo-data generator, so about two
thirds carry metadata or before/after states), integrates them into the tenant's Merkle tree (as the
verifiable log's integrator does continuously in production, where it is required) and settles the database
(``VACUUM (ANALYZE)``, ``CHECKPOINT``); none of this is timed. Then R rounds (default 2), each on an empty lake:

1. the lake export (``analytics.lake.export_tenant``): read from PostgreSQL in seq order, decrypt each
   payload, write column-encrypted zstd Parquet per day, fsync, list in the manifest with the hourly rollups;
   rows/s;
2. the ceiling: the same rows (read back from the lake, decrypted, as one in-memory Arrow table) written by
   ``pyarrow.parquet.write_table`` with zstd and no encryption; rows/s.

Prints both and their ratio (target >= 0.5) each round, with the CPU seconds of this process and of
PostgreSQL during each (the machine is shared: CPU moves less than wall time with other load) and the load
average, plus the process's peak RSS growth during the first export.
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
from typing import Any

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
from app.verifiable.integrator import integrate_tenant  # noqa: E402
from app.verifiable.keys import checkpoint_keys  # noqa: E402
from app.verifiable.note import generate_signer_key  # noqa: E402
from bench import CPUMeter, Stack, settle  # noqa: E402
from db import migrate  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE  # noqa: E402
from db.tenancy import bind_tenant  # noqa: E402
from db.urls import plain_dsn  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


async def _empty_lake(stack: Stack, workdir: Path, tenant_id: uuid.UUID) -> LakeStore:
    """Forget the tenant's lake (manifest, watermark, rollups; owner connection) and its files."""
    owner = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        for table in ("lake_files", "lake_watermarks", "lake_rollups", "lake_rollup_hours"):
            await owner.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant_id)
    finally:
        await owner.close()
    shutil.rmtree(workdir / "lake", ignore_errors=True)
    return LakeStore.from_url(str(workdir / "lake"))


async def run(stack: Stack, workdir: Path, events: int, profile: bool = False, rounds: int = 2) -> None:
    settings = Settings(
        env=Environment.test,
        database_url=stack.url(API_ROLE),
        data_dir=workdir / "data",
        master_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        jwt_signing_keys="bench:" + "s" * 48,
        operator_password="bench-operator-password",
        demo_data=False,
        run_worker_in_process=False,
        checkpoint_signing_keys=generate_signer_key("bench.example"),
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
    started = time.perf_counter()
    keys = checkpoint_keys(settings)
    while (done := await integrate_tenant(runtime.db, tid, keys)).new_size != done.old_size:
        pass
    print(f"integrated {done.new_size:,} leaves in {time.perf_counter() - started:.1f} s (not timed below)")
    await settle(stack)
    meter = CPUMeter(postgres=stack.embedded.pid if stack.embedded is not None else None)

    def cpu() -> dict[str, float]:
        return {"bench": time.process_time(), **meter.sample()}

    def spent(before: dict[str, float]) -> str:
        after = cpu()
        return ", ".join(f"{k} {after[k] - before[k]:.2f}" for k in before)

    table: pa.Table | None = None
    for n in range(1, rounds + 1):
        store = await _empty_lake(stack, workdir, tid)
        conn = await asyncpg.connect(dsn)
        rss_before = _rss_mb()
        profiler: Any = None
        if profile and n == 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        load, before = _load(), cpu()
        started = time.perf_counter()
        result = await export_tenant(conn, store, runtime.keyrings, tid)
        export_seconds = time.perf_counter() - started
        export_cpu = spent(before)
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        export_rate = result.rows / export_seconds
        rss = f", peak RSS growth {_rss_mb() - rss_before:.0f} MB" if n == 1 else ""
        print(f"round {n}: lake export: {result.rows:,} rows in {export_seconds:.2f} s = {export_rate:,.0f} rows/s "
              f"({result.files} files); CPU s: {export_cpu}; {load}{rss}")  # fmt: skip

        async with bind_tenant(conn, tid, readonly=True):
            ring = await runtime.keyrings.get(conn, tid)
            _, files = await live_files(conn, tid)
        await conn.close()
        if table is None:
            table = pa.Table.from_batches(list(open_lake_batches(store, files, ring)))
        ceiling_path = workdir / "ceiling.parquet"
        load, before = _load(), cpu()
        started = time.perf_counter()
        pq.write_table(table, ceiling_path, compression="zstd")
        ceiling_seconds = time.perf_counter() - started
        ceiling_rate = table.num_rows / ceiling_seconds
        print(f"round {n}: ceiling, pyarrow write_table (zstd, in-memory table, no encryption): "
              f"{table.num_rows:,} rows in {ceiling_seconds:.2f} s = {ceiling_rate:,.0f} rows/s; "
              f"CPU s: {spent(before)}; {load}")  # fmt: skip
        print(f"round {n}: ratio: {export_rate / ceiling_rate:.3f} (target >= 0.5)", flush=True)
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
    parser.add_argument("--rounds", type=int, default=2, help="export + ceiling rounds, each on an empty lake")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-lake-"))
    stack = Stack(workdir, 1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        asyncio.run(run(stack, workdir, args.events, args.profile, args.rounds))
    finally:
        if stack.embedded is not None:
            stack.embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
