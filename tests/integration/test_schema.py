"""The schema as the migrations build it: round trips, RLS on every tenant table, roles, PII trigger."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from db import migrate
from db.provision import API_ROLE, OWNER_ROLE
from tests.conftest import Database, PgServer, provision_locked


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def tenant_tables(owner_dsn: str) -> list[str]:
    rows = await _fetch(
        owner_dsn,
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           ORDER BY 1""",
    )
    return [r["relname"] for r in rows]


def test_migrations_upgrade_downgrade_upgrade(pg_server: PgServer) -> None:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    asyncio.run(provision_locked(pg_server, name))  # the roles are the whole server's: see tests/conftest.py
    owner = pg_server.url(OWNER_ROLE, name)
    dsn = pg_server.url(OWNER_ROLE, name, driver="postgresql")
    migrate.upgrade(owner)
    first = asyncio.run(tenant_tables(dsn))
    assert "audit_logs" in first and "users" in first
    migrate.downgrade(owner, "base")
    remaining = asyncio.run(_fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    assert [r["tablename"] for r in remaining] == ["alembic_version"]
    migrate.upgrade(owner)
    assert asyncio.run(tenant_tables(dsn)) == first
    version = asyncio.run(_fetch(dsn, "SELECT version_num FROM alembic_version"))
    assert len(version) == 1


async def test_every_tenant_table_has_forced_rls_and_a_policy(database: Database) -> None:
    dsn = database.dsn(database.owner_url)
    tables = await tenant_tables(dsn)
    assert {"users", "sessions", "api_keys", "audit_logs", "conversations", "mask_users", "tenant_keys"} <= set(tables)
    for table in [*tables, "tenants"]:
        row = (
            await _fetch(
                dsn,
                """SELECT c.relrowsecurity, c.relforcerowsecurity,
                          (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
                             AND pg_get_expr(p.polqual, p.polrelid) LIKE '%auditlog_current_tenant()%') AS n
                   FROM pg_class c WHERE c.relname = $1 AND c.relnamespace = 'public'::regnamespace""",
                table,
            )
        )[0]
        assert row["relrowsecurity"] and row["relforcerowsecurity"], table
        assert row["n"] >= 1, f"{table} has no tenant policy"


async def test_api_role_owns_nothing_and_cannot_bypass_rls(database: Database) -> None:
    api = database.dsn(database.api_url)
    me = (await _fetch(api, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"))[0]
    assert me["rolsuper"] is False and me["rolbypassrls"] is False
    owned = await _fetch(
        api,
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user""",
    )
    assert owned == []
    owner = await _fetch(api, "SELECT pg_get_userbyid(relowner) AS o FROM pg_class WHERE relname = 'audit_logs'")
    assert owner[0]["o"] == OWNER_ROLE != API_ROLE


async def _seed_two_tenants(owner_dsn: str) -> tuple[uuid.UUID, uuid.UUID]:
    a, b = uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(owner_dsn)
    try:
        for tid in (a, b):
            await conn.fetch("SELECT * FROM auditlog_create_tenant($1, $2)", tid, f"t-{tid.hex[:8]}")
            await conn.execute(
                "INSERT INTO users (tenant_id, id, username, role, password_hash) VALUES ($1, $2, 'u', 'User', 'x')",
                tid,
                uuid.uuid4(),
            )
            await conn.execute(
                """INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type)
                   VALUES ($1, now(), $2, 1, 'CREATE', 'doc')""",
                tid,
                uuid.uuid4(),
            )
    finally:
        await conn.close()
    return a, b


async def test_raw_sql_with_tenant_a_cannot_see_or_write_tenant_b(database: Database) -> None:
    a, b = await _seed_two_tenants(database.dsn(database.owner_url))
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        # No tenant set: every tenant table looks empty.
        assert await conn.fetchval("SELECT count(*) FROM audit_logs") == 0
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(a))
            assert {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM audit_logs")} == {a}
            assert {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM users")} == {a}
            assert await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", b) == 0
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 1
            updated = await conn.execute("UPDATE users SET username = 'x' WHERE tenant_id = $1", b)
            assert updated == "UPDATE 0"
            deleted = await conn.execute("DELETE FROM users WHERE tenant_id = $1", b)
            assert deleted == "DELETE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(a))
                await conn.execute(
                    """INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type)
                       VALUES ($1, now(), $2, 9, 'CREATE', 'doc')""",
                    b,
                    uuid.uuid4(),
                )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(a))
                await conn.execute(
                    "INSERT INTO users (tenant_id, id, username, role, password_hash) VALUES ($1, $2, 'evil', 'Admin', 'x')",
                    b,
                    uuid.uuid4(),
                )
        # Partitions carry no policy of their own, so the API role has no access to them at all.
        partition = "audit_logs_t_" + b.hex
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f'SELECT * FROM "{partition}"')
        # The audit log is append-only for the API role.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(a))
                await conn.execute("UPDATE audit_logs SET message = 'tampered'")
    finally:
        await conn.close()


async def test_users_trigger_masks_pii_on_insert_and_update(database: Database) -> None:
    a, _ = await _seed_two_tenants(database.dsn(database.owner_url))
    uid = uuid.uuid4()
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(a))
            await conn.execute(
                """INSERT INTO users (tenant_id, id, username, role, email, phone, password_hash)
                   VALUES ($1, $2, 'raw', 'User', 'alice.smith@example.com', '+1 555 123 4567', 'x')""",
                a,
                uid,
            )
            row = await conn.fetchrow("SELECT email, phone FROM users WHERE id = $1", uid)
            assert row["email"] == "a***@e***.com"
            assert "alice" not in row["email"] and "4567" not in row["phone"] and row["phone"].endswith("67")
            await conn.execute("UPDATE users SET email = 'bob@corp.example.org' WHERE id = $1", uid)
            assert await conn.fetchval("SELECT email FROM users WHERE id = $1", uid) == "b***@c***.org"
            # The vault is write-only for the API role.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.fetch("SELECT * FROM mask_users")
    finally:
        await conn.close()
    vault = await _fetch(
        database.dsn(database.owner_url),
        "SELECT field, convert_from(value, 'UTF8') AS v, encrypted FROM mask_users WHERE user_id = $1 ORDER BY field",
        uid,
    )
    assert [(r["field"], r["v"], r["encrypted"]) for r in vault] == [
        ("email", "bob@corp.example.org", False),
        ("phone", "+1 555 123 4567", False),
    ]


async def test_production_refuses_to_run_as_the_table_owner(database: Database, tmp_path: Path) -> None:
    from app.runtime import build_runtime
    from app.settings import Environment
    from tests.conftest import make_settings

    settings = make_settings(database, tmp_path, env=Environment.production, database_url=database.owner_url)
    with pytest.raises(RuntimeError, match="owns the tables"):
        await build_runtime(settings)
