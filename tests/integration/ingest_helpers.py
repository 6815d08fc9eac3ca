"""Shared helpers of the ingest tests: raw rows through the owner connection, decrypting with the keyring."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from tests.conftest import ApiClient, Database


async def owner(database: Database) -> asyncpg.Connection:
    return await asyncpg.connect(database.dsn(database.owner_url))


async def raw_row(database: Database, event_id: str | uuid.UUID) -> asyncpg.Record | None:
    conn = await owner(database)
    try:
        return await conn.fetchrow(
            "SELECT *, search::text AS search_text FROM audit_logs WHERE id = $1", uuid.UUID(str(event_id))
        )
    finally:
        await conn.close()


async def count_rows(database: Database, tenant_id: str) -> int:
    conn = await owner(database)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", uuid.UUID(tenant_id)))
    finally:
        await conn.close()


async def count_user_rows(database: Database, tenant_id: str) -> int:
    """Rows of a tenant that the service did not write itself: not read-audit (``audit_log``), unmask
    records or administrative events (``auditlog.*``: logins, users, keys created...)."""
    conn = await owner(database)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM audit_logs WHERE tenant_id = $1"
                " AND resource_type NOT IN ('audit_log', 'audit_log_pii') AND resource_type NOT LIKE 'auditlog.%'",
                uuid.UUID(tenant_id),
            )
        )
    finally:
        await conn.close()


async def decrypt(client: ApiClient, tenant_id: str, blob: bytes, event_id: Any, field: str) -> Any:
    runtime = client.app.state.runtime
    tid = uuid.UUID(tenant_id)
    async with runtime.db.tenant(tid) as session:
        ring = await runtime.keyrings.get(session, tid)
    return msgspec.json.decode(ring.decrypt(bytes(blob), event_id=uuid.UUID(str(event_id)), field=field))


async def search_token(client: ApiClient, tenant_id: str, word: str) -> str:
    """How the tenant's blind index stores a metadata word in ``audit_logs.search`` (``db.blind_index``)."""
    from db.blind_index import search_index

    runtime = client.app.state.runtime
    tid = uuid.UUID(tenant_id)
    async with runtime.db.tenant(tid) as session:
        ring = await runtime.keyrings.get(session, tid)
    return search_index(ring).token(word)
