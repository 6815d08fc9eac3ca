"""Behind a trusted proxy the client's address (X-Forwarded-For) is what read auditing and rate limits see.

httpx's ASGI transport presents every request as coming from 127.0.0.1, which plays the proxy here.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import text

from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app

FORWARDED = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7"}


async def _view_addresses(client: ApiClient, tenant_id: str, n: int) -> list[str | None]:
    runtime = client.app.state.runtime
    for _ in range(100):
        async with runtime.db.tenant(uuid.UUID(tenant_id)) as session:
            rows = (
                await session.execute(
                    text("SELECT host(ip_address) FROM audit_logs WHERE action = 'VIEW' ORDER BY seq")
                )
            ).all()
        if len(rows) >= n:
            return [r[0] for r in rows]
        await asyncio.sleep(0.05)
    raise AssertionError("the read was not audited")


async def test_the_client_behind_a_trusted_proxy_is_recorded(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, trusted_proxies="127.0.0.1, 10.0.0.0/8")
    async with running_app(settings) as client:
        t = await make_tenant(client)
        assert (await client.get("/api/v1/logs", headers={**t.auditor, **FORWARDED})).status_code == 200
        assert await _view_addresses(client, t.id, 1) == ["198.51.100.7"]


async def test_without_trusted_proxies_the_header_is_ignored(database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path)) as client:
        t = await make_tenant(client)
        assert (await client.get("/api/v1/logs", headers={**t.auditor, **FORWARDED})).status_code == 200
        assert await _view_addresses(client, t.id, 1) == ["127.0.0.1"]


async def test_anonymous_rate_limits_count_per_forwarded_client(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, trusted_proxies="127.0.0.1", rate_limit_other_routes=2)
    body = {"tenant": "no-such-tenant", "username": "x", "password": "wrong"}

    async def login_from(address: str) -> int:
        answer = await client.post("/api/v1/auth/token", json=body, headers={"X-Forwarded-For": address})
        return answer.status_code

    async with running_app(settings) as client:
        assert [await login_from("198.51.100.7") for _ in range(3)] == [401, 401, 429]
        assert await login_from("198.51.100.8") == 401  # another client behind the same proxy: its own budget
