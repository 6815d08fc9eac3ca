"""Scheduled-export benchmark: one day window of N events delivered to a local S3-compatible server, against the
analytics export (``GET /logs/export``) of the same rows in the same run, and the delivering process's peak RSS
growth.

Run on demand (never in CI): ``uv run --frozen python bench/bench_scheduled_export.py [--events N] [--no-lake]
[--formats ndjson,parquet]``. It starts its own embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``), the API
under Granian on 127.0.0.1 (``bench.Stack``) and moto's standalone S3 server (a subprocess on 127.0.0.1), then:

1. loads N events (``bench.make_event``: metadata, masking, encryption) through the ingest writer with
   ``received_at`` spread over yesterday (UTC): 2,000-event groups, group i received at
   ``yesterday + i * 86400 / groups`` seconds, so the whole load is one closed day window; settles the database
   (``VACUUM (ANALYZE)``, ``CHECKPOINT``) and runs ``auditlog export-lake`` (unless ``--no-lake``: every event is
   then in the PostgreSQL hot tail);
2. for each format: ``GET /api/v1/logs/export`` of the tenant's events (the same N rows) streamed to a file:
   rows/s and the Granian server's peak RSS growth (``bench_analytics.export_once``; a one-hour export first,
   uncounted);
3. for each format: a daily schedule (``POST /api/v1/export-schedules``, ``start_at`` yesterday, an S3 destination
   on the moto server) and its window delivered by a child process that runs only the scheduler's catch-up for
   that schedule (``ExportScheduler.catch_up``: the close check, the read through the analytics engine, the
   multipart upload, the ``EXPORT`` read event and the bookkeeping) — no other worker task competes. The child
   reports the seconds, rows and bytes and its own peak RSS growth (psutil, sampled every 50 ms, against its RSS
   just before the run). The object is then read back from the S3 server and its rows counted.

Each figure is printed with the load average and ``bench.cpu_probe`` (the machine is shared); the JSON lands in
``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analytics import export_once

from bench import ROOT, Stack, count_events, cpu_probe, make_event, settle, writer_token

GROUP = 2000


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


# -- moto ------------------------------------------------------------------------------------------
def start_moto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    from bench import free_port

    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                        region_name="us-east-1")  # fmt: skip


def count_object_rows(endpoint: str, bucket: str, key: str, fmt: str, workdir: Path) -> tuple[int, int]:
    """The object's rows and bytes, read back from the S3 server."""
    import pyarrow.parquet as pq

    target = workdir / f"object.{fmt}"
    s3_client(endpoint).download_file(bucket, key, str(target))
    size = target.stat().st_size
    if fmt == "parquet":
        rows = pq.read_metadata(target).num_rows
    else:
        with target.open("rb") as f:
            rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b""))
        rows -= 1 if fmt == "csv" else 0
    target.unlink()
    return rows, size


# -- loading ---------------------------------------------------------------------------------------
async def load_window(env: dict[str, str], tenant_id: uuid.UUID, total: int, day: datetime) -> float:
    """``total`` events through the ingest writer, received over ``day`` (UTC); returns the seconds taken."""
    import msgspec

    from app.logs.ingest import IngestWriter
    from app.logs.prepare import prepare_event
    from app.logs.schemas import EventIn
    from db.crypto import LocalMasterKey
    from db.engine import make_engine
    from db.keyring import KeyringStore
    from db.tenancy import TenantDB
    from db.urls import plain_dsn

    engine = make_engine(env["AUDIT_DATABASE_URL"], pool_size=2, max_overflow=2, application_name="bench-load")
    db = TenantDB(engine)
    writer = IngestWriter(plain_dsn(env["AUDIT_DATABASE_URL"]), db,
                          KeyringStore(LocalMasterKey.from_setting(env["AUDIT_MASTER_KEY"])))  # fmt: skip
    await writer.start()
    rng = random.Random(17)
    groups = (total + GROUP - 1) // GROUP
    step = timedelta(seconds=86_399 / max(groups, 1))
    started = time.perf_counter()
    pending: list[asyncio.Task[Any]] = []
    try:
        for i in range(groups):
            received = day + i * step
            size = min(GROUP, total - i * GROUP)
            events = [msgspec.convert(make_event(rng, received, span_days=2), EventIn) for _ in range(size)]
            prepared = [prepare_event(e, tenant_id=tenant_id, actor="bench", now=received) for e in events]
            pending.append(asyncio.create_task(writer.submit(tenant_id, prepared)))
            if len(pending) >= 4:
                await pending.pop(0)
            if i % 50 == 0:
                print(f"    … {i * GROUP:,} events", flush=True)
        await asyncio.gather(*pending)
    finally:
        await writer.stop()
        await engine.dispose()
    return time.perf_counter() - started


# -- the delivering child --------------------------------------------------------------------------
def child(tenant_id: str, schedule_id: str, endpoint: str) -> None:
    """Deliver the schedule's closed windows (``catch_up``) and print what it took, as JSON."""
    sys.path.insert(0, str(ROOT))
    from app.export_schedules.runner import RunnerConfig
    from app.export_schedules.scheduler import ExportScheduler
    from app.exports.access import lake_store
    from app.logs.ingest import IngestWriter
    from app.settings import load_settings
    from db.crypto import LocalMasterKey
    from db.engine import make_engine
    from db.keyring import KeyringStore
    from db.tenancy import TenantDB
    from db.urls import plain_dsn

    settings = load_settings()
    me = psutil.Process()

    async def main() -> dict[str, Any]:
        assert settings.database_url and settings.master_key
        engine = make_engine(settings.database_url, pool_size=4, max_overflow=2, application_name="bench-export")
        db = TenantDB(engine)
        keyrings = KeyringStore(LocalMasterKey.from_setting(settings.master_key))
        writer = IngestWriter(plain_dsn(settings.database_url), db, keyrings, max_connections=2)
        await writer.start()

        class Audit:
            services = {"ingest": writer}

        lake = lake_store(settings.lake_location, settings.s3_endpoint_url)
        cfg = RunnerConfig(db=db, keyrings=keyrings, lag=timedelta(0), retry_delay=1.0, allow_private=True,
                           lake=lake, audit=Audit())  # fmt: skip
        scheduler = ExportScheduler(cfg)
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], me.memory_info().rss)
                stop.wait(0.05)

        # Warm-up, not measured: the S3 client's service model and a DuckDB connection, loaded once per process.
        import aioboto3

        async with aioboto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                    region_name="us-east-1").client("s3", endpoint_url=endpoint) as s3:  # fmt: skip
            await s3.list_buckets()
        await asyncio.to_thread(lambda: cfg.engine.connect().close())
        before = me.memory_info().rss
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        started = time.perf_counter()
        try:
            results = await scheduler.catch_up(uuid.UUID(tenant_id), uuid.UUID(schedule_id), datetime.now(UTC))
        finally:
            seconds = time.perf_counter() - started
            stop.set()
            thread.join()
            await writer.stop()
            await engine.dispose()
        peak[0] = max(peak[0], me.memory_info().rss)
        return {
            "windows": [(r.status, r.window_start.isoformat(), r.rows, r.bytes, r.error) for r in results],
            "rows": sum(r.rows for r in results),
            "bytes": sum(r.bytes for r in results),
            "seconds": round(seconds, 2),
            "rss_before_mb": round(before / 2**20),
            "rss_growth_mb": round((peak[0] - before) / 2**20),
        }

    print(json.dumps(asyncio.run(main())), flush=True)
    os._exit(0)  # skip interpreter teardown: it has crashed (SIGSEGV) now and then once the run was over


def deliver(env: dict[str, str], tenant_id: str, schedule_id: str, endpoint: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", tenant_id, schedule_id, endpoint],
        cwd=ROOT, env={**env, "PYTHONFAULTHANDLER": "1"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"delivery child exited {done.returncode}: {done.stdout[-2000:]} {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-lake", action="store_true", help="skip the lake export: every event in the hot tail")
    parser.add_argument("--formats", default="ndjson,parquet")
    parser.add_argument("--child", nargs=3, metavar=("TENANT", "SCHEDULE", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    formats = [f for f in args.formats.split(",") if f]
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-schedules-"))
    stack = Stack(workdir, 1)
    moto: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {"events": args.events, "lake": not args.no_lake, "machine": f"{os.cpu_count()} cores"}
    try:
        moto, endpoint = start_moto(workdir)
        asyncio.run(stack.create_database())
        env = stack.api_env()
        env.update(AUDIT_ALLOW_PRIVATE_URLS="true")
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        port = stack.serve("app.asgi:create_app_from_env", env)
        base = f"http://127.0.0.1:{port}"
        server_pid = stack.procs[0].pid
        tid, token = asyncio.run(writer_token(base))
        headers = {"Authorization": f"Bearer {token}"}

        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        seconds = asyncio.run(load_window(env, uuid.UUID(tid), args.events, day))
        results["load_s"] = round(seconds, 1)
        print(f"loaded {args.events:,} events received on {day:%Y-%m-%d} in {seconds:.0f} s "
              f"({args.events / seconds:,.0f}/s)", flush=True)  # fmt: skip
        asyncio.run(settle(stack))
        if not args.no_lake:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "app.cli", "export-lake"], cwd=ROOT, env=env, check=True,
                           capture_output=True, text=True)  # fmt: skip
            results["lake_export_s"] = round(time.perf_counter() - started, 1)
            print(f"auditlog export-lake: {results['lake_export_s']} s", flush=True)
        have = asyncio.run(count_events(stack, uuid.UUID(tid)))
        print(f"{have:,} rows in the tenant (the loaded events plus the bench's own service events)", flush=True)

        warm_up = {"format": "csv", "start_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
        httpx.get(f"{base}/api/v1/logs/export", params=warm_up, headers=headers, timeout=600).raise_for_status()
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        for fmt in formats:
            probe, load = cpu_probe(), _load()
            analytics = export_once(base, token, fmt, workdir / f"export.{fmt}", server_pid)
            if fmt == "ndjson":  # export_once counts lines less a CSV header row: NDJSON has none
                analytics["rows"] += 1
                analytics["rows_s"] = round(analytics["rows"] / analytics["seconds"])
            (workdir / f"export.{fmt}").unlink()
            analytics.update(cpu_probe_ms=probe, load=load)
            print(f"analytics export {fmt}: {analytics}", flush=True)

            made = httpx.post(
                f"{base}/api/v1/export-schedules",
                json={"name": f"bench {fmt}", "every": "day", "format": fmt, "start_at": day.isoformat(),
                      "destination": {"type": "s3", "url": f"s3://{bucket}/{fmt}", "endpoint_url": endpoint,
                                      "region": "us-east-1", "access_key_id": "bench", "secret_access_key": "bench"}},
                headers=headers, timeout=60,
            )  # fmt: skip
            made.raise_for_status()
            probe, load = cpu_probe(), _load()
            scheduled = deliver(env, tid, made.json()["id"], endpoint)
            key = f"{fmt}/{day:%Y-%m-%dT%H:%M:%SZ}.{fmt}"
            rows, size = count_object_rows(endpoint, bucket, key, fmt, workdir)
            rate = round(scheduled["rows"] / scheduled["seconds"])
            scheduled.update(object=key, object_rows=rows, object_mb=round(size / 2**20, 1), rows_s=rate,
                             cpu_probe_ms=probe, load=load)  # fmt: skip
            scheduled["ratio_to_analytics_export"] = round(scheduled["rows_s"] / analytics["rows_s"], 3)
            print(f"scheduled export {fmt}: {scheduled}", flush=True)
            results[fmt] = {"analytics_export": analytics, "scheduled_export": scheduled}
    finally:
        stack.close()
        if moto is not None:
            moto.terminate()
            try:
                moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                moto.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"bench-scheduled-export-{stamp}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
