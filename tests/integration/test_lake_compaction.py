"""Compaction and garbage collection stay exactly-once under a crash at every step, on a local folder and on
S3; the scheduled export runs through the real queue, and one tenant's failure never stops the others."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from analytics.lake import (
    COMPACTION_STEPS,
    LakeStore,
    collect_garbage,
    compact_tenant,
    export_tenant,
    live_files,
    tenant_prefix,
)
from jobs.worker import start_worker
from tests.conftest import Database, make_settings, make_tenant, running_app
from tests.integration.lake_support import (
    Crash,
    api_conn,
    crash_at,
    keyring_of,
    lake_rows,
    lake_store,
    post_events,
    s3_endpoint,
    sample_events,
)

__all__ = ["lake_store", "s3_endpoint"]  # fixtures used by this module


async def _live(conn: asyncpg.Connection, tenant_id: uuid.UUID):
    async with conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tenant_id))
        return await live_files(conn, tenant_id)


async def test_compaction_is_exactly_once_when_it_crashes(
    database: Database, tmp_path: Path, lake_store: LakeStore
) -> None:
    settings = make_settings(database, tmp_path)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        keyrings = client.app.state.runtime.keyrings
        ring = await keyring_of(client, tid)
        conn = await api_conn(database)
        try:
            for k, step in enumerate(COMPACTION_STEPS):
                day = datetime.now(UTC) - timedelta(days=2 + k)
                for _ in range(3):  # three exports: three small files of that day
                    await post_events(client, t.id, sample_events(40, day))
                    await export_tenant(conn, lake_store, keyrings, tid)
                _, before = await _live(conn, tid)
                assert len([f for f in before if f.date == day.date()]) == 3
                with pytest.raises(Crash):
                    await compact_tenant(conn, lake_store, keyrings, tid, grace_seconds=0, on_step=crash_at(step))
                watermark, rows = await lake_rows(conn, lake_store, tid, ring)
                seqs = sorted(r["seq"] for r in rows)
                assert seqs == list(range(1, watermark + 1)), step  # every exported event exactly once
                result = await compact_tenant(conn, lake_store, keyrings, tid, grace_seconds=0)
                assert not result.skipped
                watermark, rows = await lake_rows(conn, lake_store, tid, ring)
                assert sorted(r["seq"] for r in rows) == list(range(1, watermark + 1)), step
                _, after = await _live(conn, tid)
                assert len([f for f in after if f.date == day.date()]) == 1, step
                past = [f for f in after if f.date < datetime.now(UTC).date()]  # today's file waits for tomorrow
                assert past and all(f.path.rsplit("/", 1)[1].startswith("compact-") for f in past)
            await collect_garbage(conn, lake_store, tid, grace_seconds=0)
            _, final = await _live(conn, tid)
        finally:
            await conn.close()
    # retired and unlisted files are gone; every listed file is there
    assert sorted(await lake_store.list(tenant_prefix(tid))) == sorted(f.path for f in final)


async def test_scheduled_export_runs_through_the_queue_and_isolates_failures(
    database: Database, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    settings = make_settings(database, tmp_path, lake_url=str(lake))
    async with running_app(settings) as client:
        good, broken = await make_tenant(client), await make_tenant(client)
        await post_events(client, good.id, sample_events(30, datetime.now(UTC)))
        await post_events(client, broken.id, sample_events(30, datetime.now(UTC)))
    owner = await asyncpg.connect(database.dsn(database.owner_url))
    try:  # the broken tenant's data key can no longer be unwrapped
        await owner.execute(
            "UPDATE tenant_keys SET wrapped_key = '\\x00'::bytea WHERE tenant_id = $1", uuid.UUID(broken.id)
        )
    finally:
        await owner.close()
    handle = await start_worker(settings.jobs_config())
    try:
        totals = await asyncio.wait_for(handle.worker.queue.apply("export_lake"), timeout=120)
    finally:
        await handle.stop()
    assert totals["failed"] == 1 and totals["rows"] >= 30
    assert list((lake / f"tenant_id={good.id}").rglob("*.parquet"))
    assert not (lake / f"tenant_id={broken.id}").exists()
