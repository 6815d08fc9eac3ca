"""Reading is audited: lists and gets become VIEW events of the reader's tenant, written in the background."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from app.auth.principal import Principal, Role
from app.read_audit import ReadAuditRecorder, get_recorder
from app.runtime import Runtime
from tests.integration.test_search import Ev, insert_events, new_tenant, reader, runtime_of


async def view_rows(runtime: Runtime, tenant_id: uuid.UUID) -> list[Any]:
    async with runtime.db.tenant(tenant_id) as session:
        result = await session.execute(
            text(
                "SELECT id, user_id, action, resource_type, resource_id, session_id, seq, message, payload,"
                " search::text AS search FROM audit_logs WHERE action IN ('VIEW', 'EXPORT', 'QUERY')"
                " ORDER BY seq"
            )
        )
        return list(result.all())


async def wait_for(runtime: Runtime, tenant_id: uuid.UUID, n: int, within: float = 5.0) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rows = await view_rows(runtime, tenant_id)
        if len(rows) >= n or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_list_and_get_are_recorded_for_the_reader(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    a = await new_tenant(client)
    b = await new_tenant(client)
    ev = Ev(tenant_id=a.id, timestamp=datetime(2026, 1, 5, tzinfo=UTC), message="hello", user_id="jane.doe@example.com")
    await insert_events(runtime, [ev])
    listed = await client.get(
        "/api/v1/logs",
        params={"q": "hello", "severity": "INFO", "user_id": "jane.doe@example.com"},
        headers={**a.headers, "User-Agent": "audit-test/1"},
    )
    assert listed.status_code == 200
    got = await client.get(f"/api/v1/logs/{ev.id}", headers=a.headers)
    assert got.status_code == 200
    rows = await wait_for(runtime, a.id, 2)  # written by the background flush, nobody calls flush()
    assert len(rows) == 2
    for row in rows:
        assert row.action == "VIEW" and row.resource_type == "audit_log" and row.user_id == str(a.reader_id)
        assert row.session_id  # the reader's session
    assert rows[1].resource_id == str(ev.id)
    assert rows[1].seq == rows[0].seq + 1
    assert not await view_rows(runtime, b.id)
    # the stored events read back through the API with their details; PII in filters is masked
    first = (await client.get(f"/api/v1/logs/{rows[0].id}", headers=a.headers)).json()
    meta = first["metadata"]
    assert meta["route"] == "/api/v1/logs" and meta["count"] == 1 and meta["role"] == "Auditor"
    assert meta["filters"]["q"] == "hello" and meta["filters"]["severity"] == ["INFO"]
    assert "jane.doe@example.com" not in str(meta) and "jane.doe@example.com" not in rows[0].search
    assert first["user_agent"] == "audit-test/1"
    # reading the audit events is itself audited once per read - audit writes never trigger more
    await asyncio.sleep(0.6)
    assert len(await view_rows(runtime, a.id)) == 3


async def test_other_readers_and_tenants_are_kept_apart(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    a = await new_tenant(client)
    b = await new_tenant(client)
    admin_b = reader(client, b.id, Role.ADMIN)
    assert (await client.get("/api/v1/logs", headers=a.headers)).status_code == 200
    assert (await client.get("/api/v1/logs", headers=admin_b.headers)).status_code == 200
    assert (await client.get(f"/api/v1/logs/{uuid.uuid4()}", headers=admin_b.headers)).status_code == 404
    rows_a = await wait_for(runtime, a.id, 1)
    rows_b = await wait_for(runtime, b.id, 2)
    assert [r.user_id for r in rows_a] == [str(a.reader_id)]
    assert [r.user_id for r in rows_b] == [str(admin_b.reader_id)] * 2
    # invisible to the other tenant through the API as well (read records are listed only when asked for)
    params = {"action": "VIEW", "limit": 1000, "include_system": "true"}
    listed = await client.get("/api/v1/logs", params=params, headers=a.headers)
    assert str(a.reader_id) in listed.text and str(admin_b.reader_id) not in listed.text


async def test_failed_reads_record_nothing(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    a = await new_tenant(client)
    assert (await client.get("/api/v1/logs", params={"limit": 0}, headers=a.headers)).status_code == 422
    assert (await client.get("/api/v1/logs", params={"cursor": "x"}, headers=a.headers)).status_code == 400
    await get_recorder(runtime).flush()
    assert await view_rows(runtime, a.id) == []


async def test_stop_flushes_what_is_queued_and_queue_is_bounded(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    a = await new_tenant(client)
    recorder = ReadAuditRecorder(runtime, interval=60, max_pending=3)  # never flushes by itself
    recorder.start()
    who = Principal(tenant_id=a.id, subject_id=uuid.uuid4(), role=Role.AUDITOR, kind="api_key")
    for i in range(5):
        recorder.record_read(who, "EXPORT", "/api/v1/logs/export", {"count": i}, ip_address="not-an-ip")
    assert recorder.pending == 3 and recorder.dropped == 2
    await recorder.stop()
    rows = await view_rows(runtime, a.id)
    assert [r.action for r in rows] == ["EXPORT"] * 3
    assert {r.user_id for r in rows} == {str(who.subject_id)}
    assert recorder.pending == 0 and recorder.written == 3
