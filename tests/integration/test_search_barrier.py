"""``audit_logs_fts`` is a security barrier view and searches through it still use the GIN index.

The view runs as its owner, who sees every tenant, so its tenant condition must run before any condition
of the reading query (issue 14 finding 12). The search condition lives inside the barrier (migration
0010; since 0014 it takes a ready ``tsquery`` over the blind index), so the API role's real read path still
gets a bitmap scan of the GIN index for a rare word, in the message or (as a keyed token) in metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from analytics.tail import TailQuery, snapshot, tail_batches
from app.logs.query import LogFilters, build_list_sql
from db.blind_index import search_index
from db.fts import bind_search
from tests.conftest import Database
from tests.integration.test_search import Ev, insert_events, new_tenant, runtime_of


async def test_search_view_is_a_security_barrier(database: Database) -> None:
    owner = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        options = await owner.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'audit_logs_fts'")
    finally:
        await owner.close()
    assert "security_barrier=true" in (options or []), options


async def test_rare_word_search_uses_the_gin_index_on_the_api_path(
    client: AsyncTestClient[Any], database: Database
) -> None:
    runtime = runtime_of(client)
    a, b = await new_tenant(client), await new_tenant(client)
    now = datetime.now(UTC) - timedelta(minutes=5)
    events = [Ev(a.id, now - timedelta(seconds=i), message=f"common words number {i}") for i in range(4000)]
    rare = [Ev(a.id, now - timedelta(seconds=i, milliseconds=1), message="zyzzyva rare") for i in range(3)]
    rare += [Ev(a.id, now - timedelta(seconds=i, milliseconds=2), metadata={"w": "zyzzyva"}) for i in range(2)]
    events += rare + [Ev(b.id, now - timedelta(seconds=i), message=f"zyzzyva of tenant b {i}") for i in range(20)]
    await insert_events(runtime, events)
    owner = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        await owner.execute("ANALYZE audit_logs")
    finally:
        await owner.close()

    async with runtime.db.read(a.id) as pg:  # the API role's read connection, as GET /logs uses it
        keyring = await runtime.keyrings.get(pg, a.id)
        index = search_index(keyring)
        sql, args = build_list_sql(a.id, LogFilters(q="zyzzyva"), after=None, limit=50, search=index)
        assert "audit_logs_fts" in sql
        assert await bind_search(pg, index, "zyzzyva", local=False)
        setting = await pg.fetchval("SELECT current_setting('auditlog.search')")
        assert setting == f"'zyzzyva' | '{index.token('zyzzyva')}'"
        plan = "\n".join(row[0] for row in await pg.fetch("EXPLAIN " + sql, *args))
        found = await pg.fetch(sql, *args)
    assert "Bitmap Index Scan on" in plan and "search_idx" in plan, plan
    assert sorted(row["id"] for row in found) == sorted(ev.id for ev in rare)

    response = await client.get("/api/v1/logs", params={"q": "zyzzyva"}, headers=a.headers)
    assert response.status_code == 200, response.text
    assert sorted(item["id"] for item in response.json()["items"]) == sorted(str(ev.id) for ev in rare)

    # the analytics hot tail reads the same view, in its own snapshot transaction
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        async with snapshot(conn, a.id) as tx:
            query = TailQuery(a.id, LogFilters(q="zyzzyva"), 0, ("id",), keyring)
            tail = [
                v for batch in [b async for b in tail_batches(tx, query, None)] for v in batch.column("id").to_pylist()
            ]
    finally:
        await conn.close()
    assert sorted(tail) == sorted(str(ev.id) for ev in rare)


async def test_search_view_is_empty_without_a_search(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    a = await new_tenant(client)
    await insert_events(runtime, [Ev(a.id, datetime.now(UTC) - timedelta(minutes=1), message="zyzzyva")])
    async with runtime.db.read(a.id) as pg:
        assert await pg.fetchval("SELECT count(*) FROM audit_logs_fts") == 0
        index = search_index(await runtime.keyrings.get(pg, a.id))
        assert not await bind_search(pg, index, "-- !", local=False)  # no word: nothing set
        assert await pg.fetchval("SELECT count(*) FROM audit_logs_fts") == 0
        assert await bind_search(pg, index, "zyzzyva", local=False)
        assert await pg.fetchval("SELECT count(*) FROM audit_logs_fts") == 1
