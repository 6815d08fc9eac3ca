"""The read pool behind ``TenantDB.read``: sessions bound to one tenant at a time, read-only, rebound on reuse.

One connection (``max_size=1``) serves both tenants in turn, so every switch goes through the rebinding;
the statements here rely on row-level security alone (no ``tenant_id`` predicate) to show what the binding
lets through.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from db.tenancy import TenantDB, create_read_pool
from tests.conftest import ApiClient, Database, TenantFixture, make_tenant


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
