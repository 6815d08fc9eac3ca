"""Analyst agent benchmark: how long the offline model takes to answer over N events, and what the SQL check costs.

Run on demand (never in CI): ``uv run --frozen python bench/bench_agent.py [--events N] [--rounds R]``. It
starts its own embedded PostgreSQL (or uses ``AUDIT_BENCH_ADMIN_URL``), fills one tenant with N SQL-generated
events (``bench.synthesize``: a year of events, no metadata payload), then answers a fixed set of questions
with the offline model through ``app.chat.service.answer_question`` (catalog, agent, SQL check, engine,
persisted conversation; everything but HTTP), R rounds, and prints per-question and overall p50/p95:

1. with every event in the PostgreSQL hot tail (nothing exported to the lake yet);
2. after the lake export (``analytics.lake.export_tenant``), so DuckDB reads the decrypted Parquet lake and
   an empty tail - the steady state once the scheduled export has run (``--lake-only``: this phase alone).

A first, uncounted question of each phase loads the tenant's catalog (two scans); it is reported apart. The SQL
check's own cost is timed on the statements the offline model wrote (mean of 200 checks each).
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
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics.agent import check_sql  # noqa: E402
from analytics.engine import QueryTimeout  # noqa: E402
from analytics.lake import LakeStore, export_tenant  # noqa: E402
from app.auth.principal import Principal, Role  # noqa: E402
from app.chat.service import answer_question  # noqa: E402
from app.runtime import build_runtime  # noqa: E402
from app.settings import Environment, Settings  # noqa: E402
from app.tenants.service import create_tenant  # noqa: E402
from bench import Stack, synthesize  # noqa: E402
from db import migrate  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE  # noqa: E402
from db.urls import plain_dsn  # noqa: E402

QUESTIONS = (
    "How many events are there?",
    "How many ERROR events in the last 7 days?",
    "events by severity",
    "top 5 users",
    "failed logins by IP",
    "events per day in the last 30 days",
    "latest 20 events of user user-42",
    "show all CRITICAL logs yesterday",
    "how many DELETE events on documents this month",
    "which resource type has the most events?",
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _phase(name: str, runtime: object, principal: Principal, rounds: int) -> list[str]:
    times: dict[str, list[float]] = {q: [] for q in QUESTIONS}
    statements: list[str] = []
    unanswered: list[str] = []
    started = time.perf_counter()
    await answer_question(runtime, principal, "How many events are there?", uuid.uuid4(), [])  # type: ignore[arg-type]
    first = time.perf_counter() - started  # the catalog's scans included
    for r in range(rounds):
        for question in QUESTIONS:
            started = time.perf_counter()
            out, _ = await answer_question(runtime, principal, question, uuid.uuid4(), [])  # type: ignore[arg-type]
            times[question].append(time.perf_counter() - started)
            if out.sql is None:
                unanswered.append(f"{question}: {out.answer[:120]}")
            if r == 0 and out.sql:
                statements.append(out.sql)
    every = [t for ts in times.values() for t in ts]
    print(f"\n{name}: first question (catalog load included) {first * 1000:.0f} ms")
    for question, ts in times.items():
        print(f"  {question[:48]:48}  p50 {statistics.median(ts) * 1000:7.0f} ms   max {max(ts) * 1000:7.0f} ms")
    print(f"  all answers: n={len(every)}  p50 {_pct(every, 0.5) * 1000:.0f} ms  p95 {_pct(every, 0.95) * 1000:.0f} ms"
          f"  without a result: {len(unanswered)}")  # fmt: skip
    for line in unanswered:
        print(f"    no result: {line}")
    return statements


async def run(stack: Stack, workdir: Path, events: int, rounds: int, with_tail: bool) -> None:
    settings = Settings(
        env=Environment.test,
        database_url=stack.url(API_ROLE),
        data_dir=workdir / "data",
        master_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        jwt_signing_keys="bench:" + "s" * 48,
        operator_password="bench-operator-password",
        demo_data=False,
        run_worker_in_process=False,
        lake_url=str(workdir / "lake"),
    )
    runtime = await build_runtime(settings)
    try:
        tenant = await create_tenant(runtime, "bench-agent")
        started = time.perf_counter()
        await synthesize(stack, tenant.id, events)
        print(f"synthesized {events:,} events in {time.perf_counter() - started:.1f} s")
        principal = Principal(tenant_id=tenant.id, subject_id=uuid.uuid4(), role=Role.AUDITOR)
        statements: list[str] = []
        if with_tail:
            try:
                statements = await _phase("hot tail (all events in PostgreSQL)", runtime, principal, rounds)
            except QueryTimeout as e:
                print(f"\nhot tail: the catalog scan failed ({e}): every question would answer 503")
            runtime.services.pop("chat_catalogs", None)

        conn = await asyncpg.connect(plain_dsn(settings.database_url or ""))
        try:
            started = time.perf_counter()
            result = await export_tenant(conn, LakeStore.from_url(str(workdir / "lake")), runtime.keyrings, tenant.id)
            print(f"\nlake export: {result.rows:,} rows in {time.perf_counter() - started:.1f} s")
        finally:
            await conn.close()
        statements = await _phase("lake (after the export; empty tail)", runtime, principal, rounds) or statements

        print("\nSQL check (parse, walk, re-render), mean of 200 each:")
        for sql in statements:
            started = time.perf_counter()
            for _ in range(200):
                check_sql(sql)
            print(f"  {(time.perf_counter() - started) / 200 * 1e6:7.0f} µs  {sql[:90]}")
    finally:
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lake-only", action="store_true", help="skip the hot-tail phase (export first)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-agent-"))
    stack = Stack(workdir, 1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        asyncio.run(run(stack, workdir, args.events, args.rounds, not args.lake_only))
    finally:
        if stack.embedded is not None:
            stack.embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
