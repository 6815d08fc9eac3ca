"""Scheduled jobs run through the real SAQ queue (PostgreSQL-backed) and a real worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.runtime import build_runtime
from app.tenants.service import create_tenant
from jobs.worker import CRON_JOBS, start_worker
from tests.conftest import Database, make_settings


def _month_add(year: int, month: int, n: int) -> tuple[int, int]:
    idx = year * 12 + (month - 1) + n
    return idx // 12, idx % 12 + 1


async def test_partition_job_runs_through_the_queue(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    runtime = await build_runtime(settings)
    try:
        tenant = await create_tenant(runtime, "queue-tenant")
    finally:
        await runtime.close()
    assert any(job.function.__name__ == "precreate_partitions" for job in CRON_JOBS)

    handle = await start_worker(settings)
    try:
        created = await asyncio.wait_for(handle.worker.queue.apply("precreate_partitions", months=8), timeout=60)
    finally:
        await handle.stop()
    assert created >= 5  # the tenant started with 3 months; the job added the rest

    now = datetime.now(UTC)
    months = [_month_add(now.year, now.month, n) for n in range(9)]
    expected = {f"audit_logs_t_{tenant.id.hex}_p{y:04d}{m:02d}" for y, m in months}
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = $1::regclass",
            f"audit_logs_t_{tenant.id.hex}",
        )
    finally:
        await conn.close()
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        jobs = await conn.fetchval("SELECT count(*) FROM jobs.saq_jobs WHERE status = 'complete'")
    finally:
        await conn.close()
    names = {r["relname"] for r in rows}
    assert expected <= names
    assert f"audit_logs_t_{tenant.id.hex}_default" in names
    assert jobs >= 1
