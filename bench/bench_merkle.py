"""Verifiable-log benchmark: integration throughput (leaves/s) and the time from commit to a signed checkpoint.

Run on demand (never in CI): ``uv run --frozen python bench/bench_merkle.py [--events N] [--seconds S]``. It
starts its own embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``), then in one process:

1. loads N realistic events (demo-data generator) into one tenant through the ingest writer (the
   ``POST /logs/bulk`` path: masking, encryption, seq), timing it: the ingest rate on this machine;
2. integrates them all (``integrate_tenant``, 20k-leaf rounds: PostgreSQL reads the rows in 4,096-row pages,
   Python encodes and hashes each leaf while the next page is read, grows the tiles and signs a checkpoint,
   one transaction per round): leaves/s, and the rate of the reference leaf encoding (``LeafFields``, the
   export verifier's path) on the same rows;
3. for S seconds, one producer submits 1,000-event batches through the writer back to back (bulk-ingest
   load) while the integrator runs as in the worker (LISTEN, ``AUDIT_CHECKPOINT_INTERVAL_SECONDS`` = 0.5);
   a poller (every 10 ms) sees when each batch's last event is in a signed checkpoint. Prints p50/p99/max of
   commit (the writer's return, i.e. the ``201``) → inclusion in a checkpoint, over batches;
4. exports the tenant to a local lake and times ``auditlog verify`` over its folder (rows/s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics.lake import LakeStore, export_tenant  # noqa: E402
from app.demo_data import demo_events  # noqa: E402
from app.logs.ingest import IngestWriter  # noqa: E402
from app.logs.prepare import prepare_event  # noqa: E402
from app.logs.schemas import EventIn  # noqa: E402
from app.runtime import build_runtime  # noqa: E402
from app.settings import Environment, Settings  # noqa: E402
from app.tenants.service import create_tenant  # noqa: E402
from app.verifiable.integrator import Integrator, integrate_tenant  # noqa: E402
from app.verifiable.keys import checkpoint_keys  # noqa: E402
from app.verifiable.note import generate_signer_key  # noqa: E402
from app.verifiable.verify_lake import verify_lake  # noqa: E402
from bench import CPUMeter, Stack  # noqa: E402
from db import migrate  # noqa: E402
from db.leaf import LeafFields, leaf_hash  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE  # noqa: E402
from db.urls import plain_dsn  # noqa: E402


def _batches(tid: uuid.UUID, name: str, count: int, size: int = 1000) -> list[list[object]]:
    now = datetime.now(UTC)
    out: list[list[object]] = []
    batch: list[object] = []
    for raw in demo_events(name, count, now):
        event = EventIn(**{**raw, "timestamp": datetime.fromisoformat(raw["timestamp"])})
        batch.append(prepare_event(event, tenant_id=tid, actor="bench", now=now))
        if len(batch) == size:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(stack: Stack, workdir: Path, events: int, seconds: float, profile: bool = False) -> None:
    settings = Settings(
        env=Environment.test,
        database_url=stack.url(API_ROLE),
        data_dir=workdir / "data",
        master_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        jwt_signing_keys="bench:" + "s" * 48,
        operator_password="bench-operator-password",
        checkpoint_signing_keys=generate_signer_key("auditlog.example"),
        demo_data=False,
        run_worker_in_process=False,
    )
    runtime = await build_runtime(settings)
    keys = checkpoint_keys(settings)
    dsn = plain_dsn(settings.database_url or "")
    writer = IngestWriter(dsn, runtime.db, runtime.keyrings, max_connections=4)
    await writer.start()
    owner = await asyncpg.connect(plain_dsn(stack.url(OWNER_ROLE)))
    try:
        tid: uuid.UUID = (await create_tenant(runtime, "bench-merkle")).id
        batches = _batches(tid, "bench", events)
        meter = CPUMeter(bench=os.getpid(), postgres=stack.embedded.pid if stack.embedded is not None else None)
        cpu0 = meter.sample()
        started = time.perf_counter()
        for batch in batches:
            await writer.submit(tid, batch)  # type: ignore[arg-type]
        ingest_s = time.perf_counter() - started
        cpu1 = meter.sample()
        ingest_cpu = {k: (cpu1[k] - cpu0[k]) / events * 1e6 for k in cpu0}
        total = int(await owner.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tid))
        print(f"ingest (writer, 1 producer, 1,000-event batches): {events:,} events in {ingest_s:.2f} s "
              f"= {events / ingest_s:,.0f} events/s")  # fmt: skip

        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0 = meter.sample()
        started = time.perf_counter()
        rounds = 0
        while True:
            done = await integrate_tenant(runtime.db, tid, keys)
            rounds += 1
            if done.new_size >= total:
                break
        integrate_s = time.perf_counter() - started
        cpu1 = meter.sample()
        leaf_cpu = {k: (cpu1[k] - cpu0[k]) / total * 1e6 for k in cpu0}
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        print(f"integration: {total:,} leaves in {integrate_s:.2f} s = {total / integrate_s:,.0f} leaves/s "
              f"({rounds} rounds, each one transaction with a signed checkpoint)")  # fmt: skip
        if leaf_cpu:
            spent_in = ", ".join(f"{k} {v:.1f}" for k, v in leaf_cpu.items())
            spent_ingest = ", ".join(f"{k} {v:.1f}" for k, v in ingest_cpu.items())
            print(f"  CPU per ingested event {sum(ingest_cpu.values()):.1f} us ({spent_ingest}); per integrated leaf "
                  f"{sum(leaf_cpu.values()):.1f} us ({spent_in}); ratio "
                  f"{sum(ingest_cpu.values()) / max(sum(leaf_cpu.values()), 1e-9):.1f}x")  # fmt: skip
        rows = await owner.fetch(
            'SELECT seq, id, "timestamp", received_at, action, resource_type, resource_id, user_id, session_id,'
            " request_id, severity, host(ip_address), user_agent, message, payload FROM audit_logs"
            " WHERE tenant_id = $1",
            tid,
        )
        started = time.perf_counter()
        for row in rows:
            leaf_hash(LeafFields(tid, *row))
        hash_s = time.perf_counter() - started
        print(f"  for comparison, the reference encoding (LeafFields, the export verifier's path, in memory): "
              f"{len(rows) / hash_s:,.0f} leaves/s")  # fmt: skip

        integrator = Integrator(runtime.db, dsn, keys, interval=settings.checkpoint_interval_seconds)
        integrator.start()
        load = _batches(tid, "bench-load", int(seconds * 12_000))
        committed: list[tuple[float, int]] = []
        included: dict[int, float] = {}
        stop = asyncio.Event()

        async def poll() -> None:
            pending = 0
            while not stop.is_set() or pending < len(committed):
                size = await owner.fetchval(
                    "SELECT coalesce(max(tree_size), 0) FROM merkle_checkpoints WHERE tenant_id = $1", tid
                )
                now = time.perf_counter()
                while pending < len(committed) and committed[pending][1] <= size:
                    included[pending] = now
                    pending += 1
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        end = time.perf_counter() + seconds
        sent = 0
        started = time.perf_counter()
        for batch in load:
            if time.perf_counter() >= end:
                break
            await writer.submit(tid, batch)  # type: ignore[arg-type]
            sent += len(batch)
            committed.append((time.perf_counter(), total + sent))
        load_s = time.perf_counter() - started
        stop.set()
        await asyncio.wait_for(poller, timeout=60)
        await integrator.stop()
        delays = [included[i] - at for i, (at, _) in enumerate(committed)]
        print(f"under load: {sent:,} events in {load_s:.1f} s = {sent / load_s:,.0f} events/s ingested while "
              f"integrating; commit -> signed checkpoint over {len(delays)} batches: p50 "
              f"{statistics.median(delays) * 1000:.0f} ms, p99 {_pct(delays, 0.99) * 1000:.0f} ms, "
              f"max {max(delays) * 1000:.0f} ms")  # fmt: skip

        # the tenant's lake (it stops at the tree's size) and the offline verifier over its folder
        for _ in range(100):
            if (await integrate_tenant(runtime.db, tid, keys)).new_size >= total + sent:
                break
        lake = LakeStore.from_url(str(workdir / "lake"))
        conn = await asyncpg.connect(dsn)
        try:
            exported = await export_tenant(conn, lake, runtime.keyrings, tid)
        finally:
            await conn.close()
        started = time.perf_counter()
        report = verify_lake(workdir / "lake" / f"tenant_id={tid}", keys.verifiers)
        verify_s = time.perf_counter() - started
        assert report.ok, report.failures[:5]
        print(f"offline verification of the tenant's lake folder (auditlog verify DIR): {report.covered:,} rows "
              f"({exported.files} files) in {verify_s:.2f} s = {report.covered / verify_s:,.0f} rows/s")  # fmt: skip
    finally:
        await owner.close()
        await writer.stop()
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="print where the integration's time goes (cProfile)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-merkle-"))
    stack = Stack(workdir, 1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        asyncio.run(run(stack, workdir, args.events, args.seconds, args.profile))
    finally:
        if stack.embedded is not None:
            stack.embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
