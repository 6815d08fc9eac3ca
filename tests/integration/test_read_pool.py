"""The read pool behind ``TenantDB.read``: sessions bound to one tenant at a time, read-only, rebound on reuse.

One connection (``max_size=1``) serves both tenants in turn, so every switch goes through the rebinding;
the statements here rely on row-level security alone (no ``tenant_id`` predicate) to show what the binding
lets through.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from db.tenancy import TenantDB, create_read_pool
from tests.conftest import ApiClient, Database, TenantFixture, make_settings, make_tenant, running_app


async def _post(client: ApiClient, t: TenantFixture, n: int) -> None:
    for i in range(n):
        body = {"action": "CREATE", "resource_type": "doc", "message": f"event {i} of {t.name}"}
        assert (await client.post("/api/v1/logs", json=body, headers=t.user)).status_code == 201


async def test_one_connection_serves_tenants_in_turn_each_seeing_only_its_own(
    client: ApiClient, database: Database
) -> None:
    a, b = await make_tenant(client, "pool-a"), await make_tenant(client, "pool-b")
    await _post(client, a, 3)
    await _post(client, b, 2)
    pool = await create_read_pool(database.dsn(database.api_url), max_size=1)
    db = TenantDB(client.app.state.runtime.engine, pool)
    try:
        pids = set()
        for tenant, count in [(a, 3), (b, 2), (b, 2), (a, 3), (b, 2)]:
            async with db.read(uuid.UUID(tenant.id)) as conn:
                pids.add(conn.get_server_pid())
                rows = await conn.fetch("SELECT tenant_id FROM audit_logs WHERE resource_type = 'doc'")
                assert {r["tenant_id"] for r in rows} == {uuid.UUID(tenant.id)}
                assert len(rows) == count
        assert len(pids) == 1  # the same session, rebound each time the tenant changed
    finally:
        await pool.close()


async def test_read_sessions_are_read_only_and_survive_failed_statements(client: ApiClient, database: Database) -> None:
    a = await make_tenant(client, "pool-ro")
    await _post(client, a, 1)
    tid = uuid.UUID(a.id)
    pool = await create_read_pool(database.dsn(database.api_url), max_size=1)
    db = TenantDB(client.app.state.runtime.engine, pool)
    try:
        async with db.read(tid) as conn:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("DELETE FROM audit_logs")
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetch("SELECT 1 / 0")
            assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE resource_type = 'doc'") == 1
        async with db.read(tid) as conn:  # an open transaction is rolled back when the connection goes back
            await conn.execute("BEGIN")
        async with db.read(tid) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE resource_type = 'doc'") == 1
    finally:
        await pool.close()


async def test_an_unbound_read_pool_session_sees_nothing(client: ApiClient, database: Database) -> None:
    a = await make_tenant(client, "pool-none")
    await _post(client, a, 1)
    pool = await create_read_pool(database.dsn(database.api_url), max_size=1)
    try:
        async with pool.acquire() as conn:  # bypassing TenantDB.read: no binding, so RLS hides every row
            assert await conn.fetchval("SELECT count(*) FROM audit_logs") == 0
    finally:
        await pool.close()


async def test_a_read_past_the_statement_timeout_answers_503_and_the_connection_serves_again(
    database: Database, tmp_path: Path
) -> None:
    async with running_app(make_settings(database, tmp_path, read_statement_timeout_ms=300, db_pool_size=1)) as client:
        a = await make_tenant(client, "pool-slow")
        await _post(client, a, 2)
        assert (await client.get("/api/v1/logs?resource_type=doc", headers=a.auditor)).status_code == 200
        owner = await asyncpg.connect(database.dsn(database.owner_url))
        try:  # the owner holds every partition locked: the read waits for the lock until its timeout
            locked = owner.transaction()
            await locked.start()
            await owner.execute("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            slow = await client.get("/api/v1/logs?resource_type=doc", headers=a.auditor)
            waited = time.monotonic() - started
            one = await client.get(f"/api/v1/logs/{uuid.uuid4()}", headers=a.auditor)
            await locked.rollback()
        finally:
            await owner.close()
        assert slow.status_code == 503, slow.text
        assert slow.headers["content-type"].startswith("application/problem+json")
        assert "narrow the time window" in slow.json()["detail"]
        assert slow.headers["retry-after"] == "5"
        assert 0.25 <= waited < 5
        assert one.status_code == 503, one.text
        again = await client.get("/api/v1/logs?resource_type=doc", headers=a.auditor)  # same pooled session
        assert again.status_code == 200, again.text
        assert len(again.json()["items"]) == 2
