"""Analytics benchmark: ``GET /logs/export`` against DuckDB's own ``COPY … TO``, and ``GET /logs/stats`` latency.

Run on demand (never in CI): ``uv run --frozen python bench/bench_analytics.py [--events N] [--no-lake]
[--synthesize] [--skip-export]``. It starts its own embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``) and
the API under Granian on 127.0.0.1 (``bench.Stack``), loads N events with ``bench.make_event`` through
``POST /logs/bulk`` (4 clients, 1,000-event batches with metadata, timestamps spread over 60 days) - or, with
``--synthesize``, writes them with SQL (:func:`synthesize`: the same spread of times, actions, resource types,
severities, users and sessions, no metadata; for 10M events in a reasonable time) - settles the database
(``VACUUM (ANALYZE)``, ``CHECKPOINT``), runs ``auditlog export-lake`` once (unless ``--no-lake``: then every
event is in the PostgreSQL hot tail), then in the same run:

1. ``GET /api/v1/logs/export?format=csv`` and ``format=parquet`` of all N events: rows/s, and the server's
   peak RSS growth during the export (psutil, the Granian process tree, sampled every 50 ms, against its
   RSS just before the request; a one-hour export first, uncounted, so DuckDB's first start is not in
   it). Target ≥ 0.25 of the ceiling, ≤ 200 MB;
2. the ceiling: the rows of the Parquet export, written again by pyarrow as a plain (unencrypted) Parquet
   file, then DuckDB's ``COPY (SELECT * FROM read_parquet(…)) TO …`` as CSV and as zstd Parquet (default
   threads, i.e. every core): rows/s;
3. ``GET /api/v1/logs/stats`` over the last 30 days by day: a warm-up of 3 requests, then ``--stats-requests``
   (30) one at a time with a 0.2 s pause between them; p50/p95 (target p95 ≤ 300 ms at 10M events).

Each figure is printed with the load average and ``bench.cpu_probe`` (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import httpx
import psutil
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (
    ACTIONS,
    RESOURCE_TYPES,
    ROOT,
    SEVERITIES,
    Stack,
    batches,
    bulk_load,
    count_events,
    cpu_probe,
    settle,
    spaced_checkpoints,
    writer_token,
)
from db.provision import OWNER_ROLE

_SYNTHESIZE = """
INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type, resource_id, user_id, session_id,
                        request_id, severity, ip_address, user_agent, message)
SELECT $1, ts, gen_random_uuid(), $2 + row_number() OVER (ORDER BY ts),
       ($4::text[])[1 + floor(random() * cardinality($4::text[]))::int],
       ($5::text[])[1 + floor(random() * cardinality($5::text[]))::int],
       'res-' || (1 + floor(random() * 100000)::int), 'user-' || (1 + floor(random() * 500)::int),
       'sess-' || (1 + floor(random() * 5000)::int), md5(random()::text),
       ($6::text[])[1 + floor(random() * cardinality($6::text[]))::int],
       ('10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.'
        || (1 + floor(random() * 254)::int))::inet,
       'Mozilla/5.0 (X11; Linux x86_64) bench/1.0', 'alpha bravo charlie delta echo foxtrot golf hotel india juliet'
FROM (SELECT now() - interval '1 minute' - random() * interval '60 days' AS ts FROM generate_series(1, $3)) AS drawn
"""


async def synthesize(stack: Stack, tenant_id: uuid.UUID, events: int) -> None:
    """Add ``events`` SQL-generated events to the tenant, drawn like ``bench.make_event`` (times over the last 60
    days, the same actions, resource types and severity weights, users, sessions), without metadata, in
    500k-row statements that take their seqs from the tenant's counter; checkpoints spaced out meanwhile."""
    async with spaced_checkpoints(stack):
        conn = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
        try:
            await conn.execute(
                "SELECT auditlog_ensure_partitions($1, (now() - interval '62 days')::date, 2)", tenant_id
            )
            done = 0
            while done < events:
                n = min(500_000, events - done)
                start = await conn.fetchval(
                    "UPDATE tenant_log_seq SET last_seq = last_seq + $2 WHERE tenant_id = $1 RETURNING last_seq - $2",
                    tenant_id, n,
                )  # fmt: skip
                await conn.execute(_SYNTHESIZE, tenant_id, start, n, ACTIONS, RESOURCE_TYPES, SEVERITIES)
                done += n
                print(f"    … {done:,} events", flush=True)
        finally:
            await conn.close()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


class RssSampler:
    """Peak RSS (MB) of a process and its children, sampled every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.every = every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> float:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def export_once(base: str, token: str, fmt: str, out: Path, server_pid: int) -> dict[str, Any]:
    """Stream one export to ``out``; rows, seconds, bytes and the server's peak RSS growth."""
    sampler = RssSampler(server_pid)
    before = sampler.rss()
    started = time.perf_counter()
    with sampler, httpx.Client(base_url=base, timeout=3600) as client, out.open("wb") as f:
        headers = {"Authorization": f"Bearer {token}"}
        with client.stream("GET", "/api/v1/logs/export", params={"format": fmt}, headers=headers) as response:
            if response.status_code != 200:
                raise RuntimeError(f"export {fmt}: {response.status_code} {response.read()[:300]!r}")
            for chunk in response.iter_bytes(1 << 20):
                f.write(chunk)
    seconds = time.perf_counter() - started
    if fmt == "parquet":
        rows = pq.read_metadata(out).num_rows
    else:
        with out.open("rb") as f:
            rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b"")) - 1
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_s": round(rows / seconds),
        "mb": round(out.stat().st_size / 2**20, 1),
        "rss_before_mb": round(before),
        "rss_growth_mb": round(sampler.peak - before),
    }


def ceiling(parquet_export: Path, workdir: Path) -> dict[str, Any]:
    """DuckDB's own ``COPY … TO`` (CSV, zstd Parquet) of the same rows from a plain pyarrow-written Parquet file."""
    plain = workdir / "plain.parquet"
    pq.write_table(pq.read_table(parquet_export), plain)
    rows = pq.read_metadata(plain).num_rows
    out: dict[str, Any] = {"rows": rows}
    con = duckdb.connect(":memory:")
    try:
        for fmt, options in (("csv", "(HEADER)"), ("parquet", "(FORMAT parquet, COMPRESSION zstd)")):
            target = workdir / f"ceiling.{fmt}"
            started = time.perf_counter()
            con.execute(f"COPY (SELECT * FROM read_parquet('{plain}')) TO '{target}' {options}")
            seconds = time.perf_counter() - started
            out[fmt] = {"seconds": round(seconds, 2), "rows_s": round(rows / seconds)}
            target.unlink()
    finally:
        con.close()
    plain.unlink()
    return out


def stats_latency(base: str, token: str, requests: int) -> dict[str, Any]:
    """Sequential ``GET /logs/stats`` over the last 30 days by day (3 uncounted first)."""
    headers = {"Authorization": f"Bearer {token}"}
    times: list[float] = []
    total = None
    with httpx.Client(base_url=base, timeout=600, headers=headers) as client:
        for i in range(requests + 3):
            end = datetime.now(UTC)
            params = {
                "start_time": (end - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "interval": "day",
            }
            started = time.perf_counter()
            response = client.get("/api/v1/logs/stats", params=params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"stats: {response.status_code} {response.text[:300]}")
            total = response.json()["total"]
            if i >= 3:
                times.append(elapsed)
            time.sleep(0.2)
    times.sort()
    q = statistics.quantiles(times, n=100) if len(times) >= 2 else [times[0]] * 99
    return {"requests": len(times), "events_in_window": total, "p50_ms": round(q[49], 1),
            "p95_ms": round(q[94], 1), "max_ms": round(times[-1], 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-lake", action="store_true", help="skip the lake export: every event in the hot tail")
    parser.add_argument("--stats-requests", type=int, default=30)
    parser.add_argument("--skip-export", action="store_true", help="only the stats figure")
    parser.add_argument("--synthesize", action="store_true", help="write the events with SQL instead of the API")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-analytics-"))
    stack = Stack(workdir, 1)
    results: dict[str, Any] = {
        "events": args.events,
        "lake": not args.no_lake,
        "synthesized": args.synthesize,
        "machine": f"{os.cpu_count()} cores",
    }
    try:
        asyncio.run(stack.create_database())
        env = stack.api_env()
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        port = stack.serve("app.asgi:create_app_from_env", env)
        base = f"http://127.0.0.1:{port}"
        server_pid = stack.procs[0].pid
        tid, token = asyncio.run(writer_token(base))

        if args.synthesize:
            started = time.perf_counter()
            asyncio.run(synthesize(stack, uuid.UUID(tid), args.events))
            print(f"synthesized {args.events:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        else:
            bodies = [json.dumps(b).encode() for b in batches(50, 1000, seed=5)]
            n, s = asyncio.run(bulk_load(base, token, bodies, clients=4, duration=None, total=args.events))
            print(f"loaded {n:,} events through POST /logs/bulk in {s:.0f} s ({n / s:,.0f}/s)", flush=True)
        asyncio.run(settle(stack))
        if not args.no_lake:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "app.cli", "export-lake"], cwd=ROOT, env=env, check=True,
                                  capture_output=True, text=True)  # fmt: skip
            lake_s = time.perf_counter() - started
            results["lake_export_s"] = round(lake_s, 1)
            print(f"auditlog export-lake: {lake_s:.0f} s {done.stdout.strip()}", flush=True)
        have = asyncio.run(count_events(stack, uuid.UUID(tid)))
        print(f"{have:,} rows in the tenant (the bench's events plus its own read-audit events)", flush=True)

        if not args.skip_export:
            warm_up = {"format": "csv", "start_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
            httpx.get(f"{base}/api/v1/logs/export", params=warm_up, headers={"Authorization": f"Bearer {token}"},
                      timeout=600).raise_for_status()  # fmt: skip
            for fmt in ("csv", "parquet"):
                probe, load = cpu_probe(), _load()
                figure = export_once(base, token, fmt, workdir / f"export.{fmt}", server_pid)
                figure.update(cpu_probe_ms=probe, load=load)
                results[f"export_{fmt}"] = figure
                print(f"export {fmt}: {figure}", flush=True)
            results["ceiling"] = ceiling(workdir / "export.parquet", workdir)
            print(f"ceiling (DuckDB COPY … TO from a plain Parquet file): {results['ceiling']}", flush=True)
            for fmt in ("csv", "parquet"):
                ratio = results[f"export_{fmt}"]["rows_s"] / results["ceiling"][fmt]["rows_s"]
                results[f"export_{fmt}"]["ratio"] = round(ratio, 3)
                print(f"export {fmt}: ratio {ratio:.3f} (target >= 0.25), peak RSS growth "
                      f"{results[f'export_{fmt}']['rss_growth_mb']} MB (target <= 200 MB)")  # fmt: skip

        probe, load = cpu_probe(), _load()
        results["stats"] = {**stats_latency(base, token, args.stats_requests), "cpu_probe_ms": probe, "load": load}
        print(f"stats, 30-day window by day: {results['stats']} (target p95 <= 300 ms at 10M)", flush=True)
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"bench-analytics-{stamp}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
