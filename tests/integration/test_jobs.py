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

    handle = await start_worker(settings.jobs_config())
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


async def test_partition_job_moves_backfilled_months_out_of_the_default_partition(
    database: Database, tmp_path: Path
) -> None:
    from jobs.tasks import precreate_partitions
    from tests.conftest import make_tenant, running_app

    settings = make_settings(database, tmp_path)
    old = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        posted = await client.post(
            "/api/v1/logs/bulk",
            json=[
                {"action": "CREATE", "resource_type": "doc", "timestamp": old.isoformat(), "message": f"n{i}"}
                for i in range(5)
            ],
            headers=t.user,
        )
        assert posted.status_code == 201, posted.text
        ids = posted.json()["ids"]
        default = f"audit_logs_t_{t.id.replace('-', '')}_default"
        march = f"audit_logs_t_{t.id.replace('-', '')}_p202503"
        conn = await asyncpg.connect(database.dsn(database.owner_url))
        try:
            assert await conn.fetchval(f'SELECT count(*) FROM "{default}"') == 5
            await precreate_partitions({"db": client.app.state.runtime.db})
            assert await conn.fetchval(f'SELECT count(*) FROM "{default}"') == 0
            assert await conn.fetchval(f'SELECT count(*) FROM "{march}"') == 5
            # The moved partition has every index of the parent.
            indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = $1", march)
            parent_indexes = await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE tablename = $1",
                f"audit_logs_t_{t.id.replace('-', '')}_p{datetime.now(UTC):%Y%m}",
            )
            assert indexes == parent_indexes > 5
        finally:
            await conn.close()
        for event_id in ids:
            got = await client.get(f"/api/v1/logs/{event_id}", headers=t.auditor)
            assert got.status_code == 200 and got.json()["timestamp"].startswith("2025-03-14")
