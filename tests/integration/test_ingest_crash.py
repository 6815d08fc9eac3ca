"""A 201 means committed: SIGKILL a real server process while it is ingesting, and every event it
acknowledged (single and bulk) is still in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from app.auth.principal import Role
from app.settings import Settings
from tests.conftest import ApiClient, Database
from tests.integration.ingest_helpers import owner
from tests.servers import start_granian

pytestmark = pytest.mark.slow


async def test_acknowledged_events_survive_sigkill(
    client: ApiClient, database: Database, settings: Settings, tmp_path: Path
) -> None:
    from app.tenants.service import create_tenant

    runtime = client.app.state.runtime
    tenant = await create_tenant(runtime, f"crash-{uuid.uuid4().hex[:8]}")
    token = runtime.tokens.issue(user_id=uuid.uuid4(), tenant_id=tenant.id, role=Role.USER, session_id=uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}"}

    server = start_granian(settings, tmp_path / "server.log", wait=False)
    proc, port = server.proc, server.port
    acked: list[str] = []
    try:
        await asyncio.to_thread(server.wait_ready)
        stop, enough = asyncio.Event(), asyncio.Event()

        async def producer(n: int) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if i % 5 == 0:
                            body = [
                                {"action": "CREATE", "resource_type": "bulk", "resource_id": f"{n}-{i}-{k}"}
                                for k in range(20)
                            ]
                            r = await http.post("/api/v1/logs/bulk", json=body, headers=headers)
                            if r.status_code == 201:
                                acked.extend(r.json()["ids"])
                        else:
                            r = await http.post(
                                "/api/v1/logs",
                                headers=headers,
                                json={
                                    "action": "CREATE",
                                    "resource_type": "single",
                                    "resource_id": f"{n}-{i}",
                                    "metadata": {"n": n, "i": i},
                                },
                            )
                            if r.status_code == 201:
                                acked.append(r.json()["id"])
                        assert r.status_code == 201, r.text
                        if len(acked) >= 1500:
                            enough.set()
                    except httpx.HTTPError:
                        return  # the server is gone

        producers = [asyncio.create_task(producer(n)) for n in range(16)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout=30)
        os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no flush: whatever was acknowledged must be there
        proc.wait(timeout=10)
        stop.set()
        await asyncio.gather(*producers, return_exceptions=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    assert len(acked) >= 500, server.log.read_text()[-3000:]
    conn = await owner(database)
    try:
        stored = {str(r["id"]) for r in await conn.fetch("SELECT id FROM audit_logs WHERE tenant_id = $1", tenant.id)}
    finally:
        await conn.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost of {len(acked)}"
    assert len(set(acked)) == len(acked)
