"""Retention and cleanup never remove an event the lake does not hold; whole month partitions are dropped,
edges deleted row by row; the routes validate and are recorded as administrative events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from analytics.lake import LakeStore, export_tenant
from app.retention.plugin import retention_plugin
from jobs.lake import lake_context
from jobs.retention import apply_retention
from jobs.tasks import precreate_partitions
from tests.conftest import Database, make_settings, make_tenant, operator_headers, running_app
from tests.integration.lake_support import (
    api_conn,
    keyring_of,
    lake_rows,
    lake_store,
    post_events,
    s3_endpoint,
    sample_events,
)

__all__ = ["lake_store", "s3_endpoint"]  # fixtures used by this module


def _month_start(moment: datetime, back: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def _owner_fetch(database: Database, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_cleanup_drops_archived_months_and_deletes_archived_edges(
    database: Database, tmp_path: Path, lake_store: LakeStore
) -> None:
    settings = make_settings(database, tmp_path, lake_url=lake_store.url, s3_endpoint_url=lake_store.endpoint_url)
    now = datetime.now(UTC)
    old_month, edge_month = _month_start(now, 3), _month_start(now, 1)
    before = edge_month + timedelta(days=15)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        old = await post_events(client, t.id, sample_events(40, old_month + timedelta(days=2)))
        edge = await post_events(client, t.id, sample_events(30, edge_month + timedelta(days=3)))
        late = await post_events(client, t.id, sample_events(20, edge_month + timedelta(days=20)))
        await precreate_partitions({"db": client.app.state.runtime.db})  # old months get their own partitions
        old_partition = f"audit_logs_t_{tid.hex}_p{old_month:%Y%m}"
        assert await _owner_fetch(database, "SELECT 1 FROM pg_class WHERE relname = $1", old_partition)

        response = await client.delete("/api/v1/logs/cleanup", params={"before": before.isoformat()}, headers=t.admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["deleted_count"] == len(old) + len(edge)
        assert body["archived"] is True and body["kept_count"] == 0
        assert body["dropped_partitions"] >= 1

        remaining = {
            r["id"] for r in await _owner_fetch(database, "SELECT id::text FROM audit_logs WHERE tenant_id = $1", tid)
        }
        assert not remaining & (set(old) | set(edge))
        assert set(late) <= remaining
        assert not await _owner_fetch(database, "SELECT 1 FROM pg_class WHERE relname = $1", old_partition)
        conn = await api_conn(database)
        try:
            _, rows = await lake_rows(conn, lake_store, tid, await keyring_of(client, tid))
        finally:
            await conn.close()
        assert set(old) | set(edge) | set(late) <= {r["id"] for r in rows}
        purged = await _owner_fetch(
            database,
            "SELECT user_id FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'auditlog.tenant'"
            " AND action = 'EVENTS_PURGED'",
            tid,
        )
        assert len(purged) == 1
        listed = await client.get("/api/v1/logs", params={"limit": 1000}, headers=t.admin)
        assert listed.status_code == 200
        assert not {e["id"] for e in listed.json()["items"]} & set(old)


async def test_purge_keeps_every_event_the_lake_does_not_list(
    database: Database, tmp_path: Path, lake_store: LakeStore
) -> None:
    settings = make_settings(database, tmp_path)
    now = datetime.now(UTC)
    old_month = _month_start(now, 2)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        runtime = client.app.state.runtime
        archived = await post_events(client, t.id, sample_events(30, old_month + timedelta(days=1)))
        # a day whose manifest entry goes missing: its events are not verifiably in the lake
        other_day = await post_events(client, t.id, sample_events(7, old_month + timedelta(days=5)))
        conn = await api_conn(database)
        try:
            await export_tenant(conn, lake_store, runtime.keyrings, tid)
            # committed after the export, with an old timestamp: not in the lake
            unarchived = await post_events(client, t.id, sample_events(5, old_month + timedelta(days=1)))
            async with conn.transaction():
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tid))
                await conn.execute(
                    "DELETE FROM lake_files WHERE tenant_id = $1 AND date = $2",
                    tid,
                    (old_month + timedelta(days=5)).date(),
                )
                row = await conn.fetchrow("SELECT * FROM auditlog_purge_archived($1)", now)
        finally:
            await conn.close()
    remaining = {
        r["id"] for r in await _owner_fetch(database, "SELECT id::text FROM audit_logs WHERE tenant_id = $1", tid)
    }
    assert not set(archived) & remaining
    assert set(unarchived) | set(other_day) <= remaining
    # the month holding unarchived rows was not dropped; its archived rows were deleted one by one
    assert row["dropped_partitions"] == 0
    assert row["deleted"] == len(archived)
    assert row["kept"] >= len(unarchived) + len(other_day)
    # the API role itself can never delete events
    conn = await api_conn(database)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tid))
            try:
                await conn.execute("DELETE FROM audit_logs WHERE tenant_id = $1", tid)
            except asyncpg.InsufficientPrivilegeError:
                pass
            else:
                raise AssertionError("the API role deleted events")
    finally:
        await conn.close()


async def test_retention_route_validates_and_the_job_archives_before_removing(
    database: Database, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    settings = make_settings(database, tmp_path, lake_url=str(lake))
    now = datetime.now(UTC)
    async with running_app(settings) as client:
        t, other = await make_tenant(client), await make_tenant(client)
        tid = uuid.UUID(t.id)
        url = f"/api/v1/tenants/{t.id}/retention"
        for bad in ({"days": 0}, {"days": 3651}, {}, {"days": "x"}):
            r = await client.put(url, json=bad, headers=t.admin)
            assert r.status_code in (400, 422), (bad, r.status_code)
        assert (await client.put(url, json={"days": 30}, headers=t.auditor)).status_code == 403
        assert (await client.put(url, json={"days": 30}, headers=other.admin)).status_code == 404
        r = await client.put(url, json={"days": 45}, headers=await operator_headers(client))
        assert r.status_code == 200 and r.json()["retention_days"] == 45
        r = await client.put(url, json={"days": 30}, headers=t.admin)
        assert r.status_code == 200 and r.json() == {"tenant_id": t.id, "retention_days": 30}

        old = await post_events(client, t.id, sample_events(25, now - timedelta(days=40)))
        recent = await post_events(client, t.id, sample_events(10, now - timedelta(days=10)))
        kept_other = await post_events(client, other.id, sample_events(10, now - timedelta(days=40)))
        runtime = client.app.state.runtime
        ctx: dict[str, Any] = {"db": runtime.db, "keyrings": runtime.keyrings}
        lake_context(ctx, settings.jobs_config())
        plugin = retention_plugin(settings)  # as in `auditlog worker`: its own ingest writer
        await plugin.startup(ctx)
        try:
            totals = await apply_retention(ctx)
        finally:
            await plugin.shutdown(ctx)
        assert totals["failed"] == 0 and totals["deleted"] == len(old)

        conn = await api_conn(database)
        try:
            _, rows = await lake_rows(conn, ctx["lake"], tid, await keyring_of(client, tid))
        finally:
            await conn.close()
    remaining = {r["id"] for r in await _owner_fetch(database, "SELECT id::text FROM audit_logs")}
    assert not set(old) & remaining
    assert set(recent) | set(kept_other) <= remaining  # the other tenant has no retention: untouched
    assert set(old) <= {r["id"] for r in rows}
    changes = await _owner_fetch(
        database,
        "SELECT count(*) AS n FROM audit_logs WHERE tenant_id = $1 AND action = 'RETENTION_CHANGED'",
        tid,
    )
    assert changes[0]["n"] == 2
    purges = await _owner_fetch(
        database,
        "SELECT user_id FROM audit_logs WHERE tenant_id = $1 AND action = 'EVENTS_PURGED'",
        tid,
    )
    assert [r["user_id"] for r in purges] == ["system:retention"]


async def test_cleanup_refuses_bad_before_and_non_admins(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        for params in ({"before": future}, {"before": "2025-01-01T00:00:00"}, {"before": "yesterday"}):
            r = await client.delete("/api/v1/logs/cleanup", params=params, headers=t.admin)
            assert r.status_code == 422, (params, r.text)
            assert r.json()["errors"][0]["field"] == "before"
        assert (await client.delete("/api/v1/logs/cleanup", headers=t.admin)).status_code in (400, 422)
        ok = {"before": "2025-01-01T00:00:00Z"}
        assert (await client.delete("/api/v1/logs/cleanup", params=ok, headers=t.user)).status_code == 403
        assert (await client.delete("/api/v1/logs/cleanup", params=ok, headers=t.auditor)).status_code == 403
        assert (await client.delete("/api/v1/logs/cleanup", params=ok)).status_code == 401
        r = await client.delete("/api/v1/logs/cleanup", params=ok, headers=t.admin)
        assert r.status_code == 200 and r.json()["deleted_count"] == 0
