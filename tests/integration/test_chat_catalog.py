"""The agent's catalog without scanning events: PostgreSQL's grouping of the hot tail plus each lake file's
counts (kept per file) equal a full ``GROUP BY`` over the tenant's ``events`` through the engine, with the
events split between the lake and the tail, service events left out and another tenant's never counted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics.agent.summary import FileSummaries, summarize_events
from analytics.lake import LakeStore, export_tenant
from app.chat.service import tenant_events
from db.event_filters import READ_AUDIT, is_service_resource_type
from tests.conftest import Database, make_settings, make_tenant, running_app
from tests.integration.chat_data import seed
from tests.integration.lake_support import api_conn

_ORACLE = """
SELECT action, severity, resource_type, count(*) AS n, min("timestamp") AS first_at, max("timestamp") AS last_at
FROM events GROUP BY action, severity, resource_type
"""


def _fold(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": 0, "action": {}, "severity": {}, "resource_type": {}}
    for r in rows:
        out["total"] += r["n"]
        for kind in ("action", "severity", "resource_type"):
            out[kind][r[kind]] = out[kind].get(r[kind], 0) + r["n"]
    out["first_at"] = min((r["first_at"] for r in rows), default=None)
    out["last_at"] = max((r["last_at"] for r in rows), default=None)
    return out


async def test_catalog_summary_equals_a_full_scan_over_lake_and_tail(database: Database, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    settings = make_settings(database, tmp_path, lake_url=str(lake))
    async with running_app(settings) as client:
        runtime = client.app.state.runtime
        a, b = await make_tenant(client), await make_tenant(client)
        now = datetime.now(UTC)
        await seed(client, a, now)
        await seed(client, b, now)
        await client.post("/api/v1/logs/bulk", json=[{"action": "B_ONLY", "resource_type": "b"}], headers=b.admin)
        assert (await client.get("/api/v1/logs", headers=a.auditor)).status_code == 200  # a service event (VIEW)
        for _ in range(100):  # read records are written in the background: wait until one is stored
            listed = await client.get(
                "/api/v1/logs", params={"resource_type": READ_AUDIT}, headers=a.auditor
            )  # fmt: skip
            if listed.json()["items"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no read record was stored")
        tid = uuid.UUID(a.id)
        store = LakeStore.from_url(str(lake))
        conn = await api_conn(database)
        try:
            assert (await export_tenant(conn, store, runtime.keyrings, tid)).rows > 0
        finally:
            await conn.close()
        await seed(client, a, now)  # a second copy stays in the hot tail
        files = FileSummaries()

        async def summary() -> Any:
            async with runtime.db.read(tid) as pg:
                return await summarize_events(pg, tid, store, files)

        got = await summary()
        async with tenant_events(runtime, tid)(("timestamp", "action", "severity", "resource_type")) as session:
            oracle = _fold((await session.query(_ORACLE, time_limit=10)).to_pylist())
        assert got.total == oracle["total"] and oracle["total"] >= 240
        assert (got.actions, got.severities, got.resource_types) == (
            oracle["action"], oracle["severity"], oracle["resource_type"]
        )  # fmt: skip
        assert (got.first_at, got.last_at) == (oracle["first_at"], oracle["last_at"])
        assert "B_ONLY" not in got.actions
        assert not any(is_service_resource_type(rt) for rt in got.resource_types), got.resource_types
        assert files._groups, "each lake file's counts are kept"
        again = await summary()  # from the kept file counts, the same
        assert (again.total, again.actions) == (got.total, got.actions)
