"""The DuckDB engine's sandbox and its ``events`` view over a real PostgreSQL (issue 16, "The engine")."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics.engine import AnalyticsEngine, EngineLimits, EngineSession, QueryTimeout
from analytics.tenant import open_tenant_events
from app.logs.query import LogFilters
from tests.conftest import ApiClient, TenantFixture, make_tenant


async def _post(client: ApiClient, tenant: TenantFixture, n: int, tag: str) -> list[str]:
    events = [
        {
            "action": "CREATE",
            "resource_type": "document",
            "resource_id": f"{tag}-{i}",
            "metadata": {"tag": tag, "i": i},
        }
        for i in range(n)
    ]
    response = await client.post("/api/v1/logs/bulk", json=events, headers=tenant.admin)
    assert response.status_code == 201, response.text
    ids: list[str] = response.json()["ids"]
    return ids


@pytest.fixture
async def two_tenants(client: ApiClient) -> tuple[TenantFixture, TenantFixture, list[str], list[str]]:
    a, b = await make_tenant(client), await make_tenant(client)
    return a, b, await _post(client, a, 30, "alpha"), await _post(client, b, 20, "beta")


async def _session(client: ApiClient, tenant_id: str, **kw: Any) -> AsyncIterator[EngineSession]:
    runtime = client.app.state.runtime
    engine = AnalyticsEngine(EngineLimits(memory_limit_mb=256, threads=2, time_limit_s=10))
    tid = uuid.UUID(tenant_id)
    async with (
        runtime.db.read(tid) as pg,
        open_tenant_events(engine, pg, tid, runtime.keyrings, filters=LogFilters(), **kw) as session,
    ):
        yield session


async def test_events_hold_exactly_the_tenants_events_and_rescan(two_tenants: Any, client: ApiClient) -> None:
    a, _b, ids_a, ids_b = two_tenants
    async for session in _session(client, a.id):
        table = await session.query("SELECT id, metadata FROM events ORDER BY seq")
        assert table.column("id").to_pylist() == ids_a
        assert '"tag":"alpha"' in table.column("metadata")[0].as_py().replace(" ", "")
        joined = await session.query("SELECT count(*) AS n FROM events x JOIN events y USING (id)")
        assert joined.column("n")[0].as_py() == len(ids_a)  # a second scan sees the same rows
        found = await session.query("SELECT count(*) AS n FROM events WHERE id IN (SELECT unnest(?))", [ids_b])
        assert found.column("n")[0].as_py() == 0
        tables = await session.query("SELECT table_name FROM information_schema.tables")
        assert set(tables.column("table_name").to_pylist()) == {"events"}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


_HOSTILE = [
    "SELECT * FROM read_csv('{path}')",
    "SELECT * FROM read_parquet('{path}')",
    "SELECT * FROM '{path}'",
    "SELECT * FROM read_text('{path}')",
    "SELECT * FROM glob('{dir}/*')",
    "COPY (SELECT * FROM events) TO '{dir}/stolen.csv'",
    "COPY (SELECT * FROM events) TO '{dir}/stolen.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{dir}/export'",
    "ATTACH '{dir}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{dir}/evil.duckdb_extension'",
    "SET enable_external_access = true",
    "SET memory_limit = '64GB'",
    "SET threads = 64",
    "RESET memory_limit",
    "PRAGMA threads = 64",
    "SET GLOBAL lock_configuration = false",
    "SELECT * FROM secret_python_value",
]


async def test_engine_refuses_files_settings_and_extensions(
    two_tenants: Any, client: ApiClient, tmp_path: Path
) -> None:
    a = two_tenants[0]
    target = tmp_path / "data.parquet"
    target.write_bytes(b"PAR1 not really")
    secret_python_value = {"x": [1]}  # a replacement scan would find this local by name
    assert secret_python_value
    async for session in _session(client, a.id):
        for sql in _HOSTILE:
            with pytest.raises(duckdb.Error):
                await session.query(sql.format(path=target, dir=tmp_path))
        settings = await session.query("SELECT current_setting('memory_limit') AS m, current_setting('threads') AS t")
        assert settings.column("t")[0].as_py() == 2
    assert _names(tmp_path) == ["data.parquet"]


async def test_a_runaway_query_is_interrupted_in_time(two_tenants: Any, client: ApiClient) -> None:
    a = two_tenants[0]
    async for session in _session(client, a.id):
        started = time.monotonic()
        with pytest.raises(QueryTimeout):
            await session.query("SELECT count(*) FROM range(1000000000000) x, events", time_limit=0.5)
        assert time.monotonic() - started < 3
        # the session still serves after the interrupt
        after = await session.query("SELECT count(*) AS n FROM events")
        assert after.column("n")[0].as_py() == 30


async def test_a_runaway_stream_is_interrupted_in_time(two_tenants: Any, client: ApiClient) -> None:
    a = two_tenants[0]
    async for session in _session(client, a.id):
        started = time.monotonic()
        with pytest.raises(QueryTimeout):
            async for _batch in session.stream(
                "SELECT x FROM range(1000000000000) t(x) ORDER BY x DESC", time_limit=0.5
            ):
                pass
        assert time.monotonic() - started < 3
