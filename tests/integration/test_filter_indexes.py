"""The filter pages of ``GET /logs`` read through the indexes migration 0017 left them (issue 13 §2).

``audit_logs`` keeps B-trees only for ``user_id`` and the ``(resource_type, severity)`` page; every other filter
column is in one GIN (``ix_audit_logs_filters``, ``btree_gin``), and a common value of a low-cardinality column is
found by walking the primary key in time order. These tests hold the API role's real page statements
(``build_list_sql`` on its read connection, row-level security on) to those plans on a tenant large enough for
the planner to choose: no page reads a populated partition sequentially, and each uses the index meant for it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.logs.query import LogFilters, build_list_sql
from app.logs.search_page import WALK_ROWS, build_walk_sql
from app.runtime import Runtime
from db.blind_index import SearchIndex, search_index
from db.fts import bind_search
from tests.conftest import Database
from tests.integration.test_search import Tenant, new_tenant, runtime_of

EVENTS = 30_000
INDEXES = {
    "audit_logs_pkey",
    "ix_audit_logs_time",
    "ix_audit_logs_service_time",
    "ix_audit_logs_seq",
    "ix_audit_logs_user",
    "ix_audit_logs_resource_severity",
    "ix_audit_logs_search",
    "ix_audit_logs_service_search",
    "ix_audit_logs_filters",
}


async def _fill(owner: asyncpg.Connection, tenant_id: uuid.UUID, now: datetime) -> None:
    """``EVENTS`` events over 6 days: 300 users, 8 actions (and ``PURGE`` on 6 events), 21 resource types,
    10,000 resource ids, 2,000 sessions, a request id and an IP address per event."""
    await owner.execute("SELECT auditlog_ensure_partitions($1, ($2::timestamptz - interval '40 days')::date, 3)",
                        tenant_id, now)  # fmt: skip
    await owner.execute(
        """
        INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type, resource_id, user_id,
          session_id, request_id, severity, ip_address, message, search)
        SELECT $1, $2::timestamptz - (g * interval '17 seconds'), gen_random_uuid(), g,
          CASE WHEN g % 5000 = 7 THEN 'PURGE'
               ELSE (ARRAY['CREATE','READ','VIEW','UPDATE','DELETE','LOGIN','LOGOUT','EXPORT'])[1 + g % 8] END,
          CASE WHEN g % 21 = 0 THEN 'document' ELSE 'resource_' || (g % 20) END,
          'res-' || (g * 7919 % 10000), 'user-' || (g * 31 % 300), 'sess-' || (g * 13 % 2000), md5(g::text),
          (ARRAY['INFO','INFO','INFO','INFO','INFO','INFO','WARNING','WARNING','ERROR','CRITICAL'])[1 + g * 7 % 10],
          ('10.' || (g / 65536) || '.' || (g / 256 % 256) || '.' || (g % 256))::inet, 'event ' || g,
          to_tsvector('simple', 'event ' || g)
        FROM generate_series(1, $3) AS g
        """,
        tenant_id, now, EVENTS,
    )  # fmt: skip
    await owner.execute("UPDATE tenant_log_seq SET last_seq = $2 WHERE tenant_id = $1", tenant_id, EVENTS)
    await owner.execute("ANALYZE audit_logs")


@dataclass
class Filled:
    """A tenant filled by ``_fill``, the owner's connection and the tenant's blind index."""

    runtime: Runtime
    tenant: Tenant
    now: datetime
    owner: asyncpg.Connection
    index: SearchIndex


@pytest.fixture
async def filled(client: AsyncTestClient[Any], database: Database) -> AsyncIterator[Filled]:
    runtime = runtime_of(client)
    tenant = await new_tenant(client)
    # Noon on the 20th of last month: the six days of events sit in one month partition whatever today is (run
    # in the first hours of a month, a fill ending now left a few hundred rows in this month's partition, which
    # the planner rightly reads sequentially).
    now = (datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)).replace(
        day=20
    )
    owner = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        await _fill(owner, tenant.id, now)
        async with runtime.db.tenant(tenant.id) as session:
            index = search_index(await runtime.keyrings.get(session, tenant.id))
        yield Filled(runtime, tenant, now, owner, index)
    finally:
        await owner.close()


async def _plan(
    pg: asyncpg.Connection, owner: asyncpg.Connection, tenant_id: uuid.UUID, filters: LogFilters
) -> tuple[set[str], list[str]]:
    """The ``audit_logs`` indexes the page statement reads, and the populated partitions it reads sequentially."""
    sql, args = build_list_sql(tenant_id, filters, after=None, limit=50)
    plan = json.loads(await pg.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    await pg.fetch(sql, *args)  # and it runs
    return await _names(owner, plan)


async def _names(owner: asyncpg.Connection, plan: Any) -> tuple[set[str], list[str]]:
    """From a JSON plan: the ``audit_logs`` indexes read (by the partitioned index's name), and the populated
    partitions read sequentially."""
    names: set[str] = set()
    scanned: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            names.add(node["Index Name"])
        elif node["Node Type"] == "Seq Scan":
            scanned.append(node["Relation Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    parents = {
        r["name"]: r["top"]
        for r in await owner.fetch(
            "SELECT c.relname AS name, (SELECT a.relid::regclass::text FROM pg_partition_ancestors(c.oid)"
            " WITH ORDINALITY AS a(relid, n) ORDER BY a.n DESC LIMIT 1) AS top FROM pg_class c"
            " WHERE c.relname = ANY($1::text[])",
            list(names),
        )
    }
    populated = [
        r["relname"]
        for r in await owner.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1::text[]) AND reltuples > 100", scanned
        )
    ]
    return {parents.get(n, n) for n in names}, populated


async def test_the_event_table_carries_its_indexes(database: Database) -> None:
    """Nine definitions, seven written per event: each event is in one of the two partial time indexes and in
    one of the two partial search GINs."""
    owner = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        names = await owner.fetch(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'audit_logs'::regclass"
        )
        gin = await owner.fetchval(
            "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'ix_audit_logs_filters'"
        )
    finally:
        await owner.close()
    assert {r["relname"] for r in names} == INDEXES
    assert gin == "gin"


@pytest.mark.parametrize("window", [False, True], ids=["no window", "2-day window"])
async def test_each_filter_page_reads_its_index(filled: Filled, window: bool) -> None:
    runtime, tenant, now, owner = filled.runtime, filled.tenant, filled.now, filled.owner
    span: dict[str, Any] = {}
    if window:
        span = {"start_time": now - timedelta(days=3), "end_time": now - timedelta(days=1)}
    expected = {
        "user_id": (LogFilters(user_id=("user-17",), **span), "ix_audit_logs_user"),
        "resource_type + severity": (
            LogFilters(resource_type=("document",), severity=("ERROR",), **span),
            "ix_audit_logs_resource_severity",
        ),
        "rare action": (LogFilters(action=("PURGE",), **span), "ix_audit_logs_filters"),
        "common action": (LogFilters(action=("VIEW",), **span), "ix_audit_logs_time"),
        "no filter": (LogFilters(**span), "ix_audit_logs_time"),
        "resource_id": (LogFilters(resource_id="res-4242", **span), "ix_audit_logs_filters"),
        "session_id": (LogFilters(session_id="sess-77", **span), "ix_audit_logs_filters"),
        "request_id": (LogFilters(request_id="e4da3b7fbbce2345d7772b0674a318d5", **span), "ix_audit_logs_filters"),
        "ip_address": (LogFilters(ip_address="10.0.19.136", **span), "ix_audit_logs_filters"),
    }
    async with runtime.db.read(tenant.id) as pg:  # the API role's read connection, as GET /logs uses it
        for name, (filters, index) in expected.items():
            used, seq_scanned = await _plan(pg, owner, tenant.id, filters)
            assert index in used, (name, used)
            assert not seq_scanned, (name, seq_scanned)


async def test_a_rare_value_after_common_ones_still_uses_the_gin(filled: Filled) -> None:
    """The API's connections keep prepared statements, and PostgreSQL may settle on one generic plan for a
    statement after five runs: after a run of common values (walking the primary key is their best plan), the
    plan the same statement runs for a rare value (``EXPLAIN EXECUTE``: the plan cache's choice) must still find
    it through the GIN, not walk the whole tenant."""
    runtime, tenant, owner = filled.runtime, filled.tenant, filled.owner
    async with runtime.db.read(tenant.id) as pg:
        for action in ["VIEW", "READ", "CREATE", "LOGIN", "UPDATE", "DELETE", "VIEW", "READ", "CREATE"]:
            sql, args = build_list_sql(tenant.id, LogFilters(action=(action,)), after=None, limit=50)
            assert len(await pg.fetch(sql, *args)) == 51
        sql, args = build_list_sql(tenant.id, LogFilters(action=("PURGE",)), after=None, limit=50)
        assert len(await pg.fetch(sql, *args)) == EVENTS // 5000
        name = await pg.fetchval("SELECT name FROM pg_prepared_statements WHERE statement = $1", sql)
        assert name is not None
        params = ", ".join(str(a) if isinstance(a, int) else "'" + str(a).replace("'", "''") + "'" for a in args)
        plan = json.loads(await pg.fetchval(f'EXPLAIN (FORMAT JSON) EXECUTE "{name}"({params})'))
    used, seq_scanned = await _names(owner, plan)
    assert "ix_audit_logs_filters" in used, used
    assert not seq_scanned, seq_scanned


READS = 20_000


async def _add_read_records(
    owner: asyncpg.Connection, tenant_id: uuid.UUID, start: datetime, step: timedelta = timedelta(milliseconds=1)
) -> None:
    """``READS`` read records (``VIEW`` of ``audit_log``) from ``start`` on, one every ``step``; after ``_fill``'s
    newest event with the default step: what a tenant's newest rows are after a while of reading (every read
    writes one)."""
    await owner.execute(
        """
        INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type, user_id, severity, message,
          search)
        SELECT $1, $2::timestamptz + g * $5::interval, gen_random_uuid(), $3 + g, 'VIEW', 'audit_log',
          'reader', 'INFO', 'event ' || g, to_tsvector('simple', 'event ' || g)
        FROM generate_series(1, $4) AS g
        """,
        tenant_id, start, EVENTS, READS, step,
    )  # fmt: skip
    await owner.execute("UPDATE tenant_log_seq SET last_seq = $2 WHERE tenant_id = $1", tenant_id, EVENTS + READS)
    await owner.execute("ANALYZE audit_logs")


def _stepped_over(plan: Any) -> int:
    """Rows the plan's index scans read and then dropped (``Rows Removed by Filter``), summed."""
    total = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal total
        if node["Node Type"] in ("Index Scan", "Index Only Scan"):
            total += int(node.get("Rows Removed by Filter", 0))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return total


async def test_default_pages_never_step_over_read_records(filled: Filled) -> None:
    """The tenant's newest rows are 20,000 read records: a default page (no filter, a common ``action``, the
    bounded walk of a ``q`` page) walks the time index of the tenant's own events (``ix_audit_logs_time``,
    migration 0019) and reads none of them; the page of the read records themselves walks the other one."""
    runtime, tenant, now, owner = filled.runtime, filled.tenant, filled.now, filled.owner
    await _add_read_records(owner, tenant.id, now)
    index = filled.index
    statements = {
        "no filter": build_list_sql(tenant.id, LogFilters(), after=None, limit=50),
        "common action": build_list_sql(tenant.id, LogFilters(action=("VIEW",)), after=None, limit=50),
        "q walk": build_walk_sql(tenant.id, LogFilters(q="event"), index, after=None, limit=50, scan=WALK_ROWS),
        "read records": build_list_sql(tenant.id, LogFilters(resource_type=("audit_log",)), after=None, limit=50),
    }
    async with runtime.db.read(tenant.id) as pg:
        for name, statement in statements.items():
            assert statement is not None
            sql, args = statement
            plan = json.loads(await pg.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))
            rows = await pg.fetch(sql, *args)
            used, seq_scanned = await _names(owner, plan)
            want = "ix_audit_logs_service_time" if name == "read records" else "ix_audit_logs_time"
            assert want in used and not seq_scanned, (name, used, seq_scanned)
            assert _stepped_over(plan) < 1_000, name  # not the 20,000 read records (a common action's others)
            assert len(rows) == 51, name
            is_read = [r["resource_type"] == "audit_log" for r in rows]
            assert all(is_read) if name == "read records" else not any(is_read), name


async def test_pages_of_both_kinds_merge_the_two_time_indexes(filled: Filled) -> None:
    """``include_system`` pages (and a ``q`` walk with it) read each time index in order and merge them: no
    sequential read of the tenant, and the page is the newest rows of both kinds, in order, across a keyset."""
    runtime, tenant, now, owner = filled.runtime, filled.tenant, filled.now, filled.owner
    # one every 3 s over the last 17 hours: interleaved with the newest events (one every 17 s)
    await _add_read_records(owner, tenant.id, now - READS * timedelta(seconds=3), timedelta(seconds=3))
    newest = await owner.fetch(
        'SELECT "timestamp", id, resource_type FROM audit_logs WHERE tenant_id = $1'
        ' ORDER BY "timestamp" DESC, id DESC LIMIT 151',
        tenant.id,
    )
    index = filled.index
    everything = LogFilters(include_system=True)
    after = (newest[99]["timestamp"], newest[99]["id"])  # the second page of 50 ends at row 150
    statements = {
        "page": build_list_sql(tenant.id, everything, after=after, limit=50),
        "q walk": build_walk_sql(
            tenant.id, msgspec.structs.replace(everything, q="event"), index, after=after, limit=50, scan=WALK_ROWS
        ),
    }
    async with runtime.db.read(tenant.id) as pg:
        for name, statement in statements.items():
            assert statement is not None
            sql, args = statement
            plan = json.loads(await pg.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            used, seq_scanned = await _names(owner, plan)
            assert {"ix_audit_logs_time", "ix_audit_logs_service_time"} <= used, (name, used)
            assert not seq_scanned, (name, seq_scanned)
            rows = await pg.fetch(sql, *args)
            assert [r["id"] for r in rows] == [r["id"] for r in newest[100:151]], name
            assert {r["resource_type"] == "audit_log" for r in rows} == {True, False}, name


async def test_a_rare_term_with_a_time_window_stays_on_the_gin(filled: Filled) -> None:
    """The GIN page of a rare term (``q``) with an ``end_time``, run as the API runs it (a prepared statement,
    more than five times): the plan the statement settles on, and its generic plan, read the search GIN index,
    not the time order (at 1M events a generic plan walked the time order testing every row, 115 ms against
    1.1 ms). At this test's size the planner picks the GIN either way, so the statement's shape, which makes a
    walk impossible (the matches behind ``OFFSET 0``, then sorted), is checked too."""
    runtime, tenant, now, owner, index = filled.runtime, filled.tenant, filled.now, filled.owner, filled.index
    async with runtime.db.read(tenant.id) as pg:
        for i in range(8):
            term = str(1000 + i * 7)  # one event's message holds each number
            filters = LogFilters(q=term, end_time=now + timedelta(days=365 * 70 + i))
            sql, args = build_list_sql(tenant.id, filters, after=None, limit=50, search=index)
            await bind_search(pg, index, term, local=False)
            assert len(await pg.fetch(sql, *args)) == 1
        name = await pg.fetchval("SELECT name FROM pg_prepared_statements WHERE statement = $1", sql)
        assert name is not None
        params = ", ".join(str(a) if isinstance(a, int) else "'" + str(a).replace("'", "''") + "'" for a in args)
        plans = []
        for mode in ("auto", "force_generic_plan"):  # the plan it settled on, and its generic plan whatever it is
            await pg.execute(f"SET plan_cache_mode = {mode}")
            plans.append(json.loads(await pg.fetchval(f'EXPLAIN (FORMAT JSON) EXECUTE "{name}"({params})')))
        await pg.execute("RESET plan_cache_mode")
    found = [await _names(owner, plan) for plan in plans]
    assert "OFFSET 0) AS matches WHERE" in sql  # no other condition, nor the order, reaches the matches' plan
    for used, seq_scanned in found:
        assert "ix_audit_logs_search" in used, used
        assert "ix_audit_logs_time" not in used and not seq_scanned, (used, seq_scanned)


async def test_the_search_of_the_tenant_events_never_reads_read_records(filled: Filled) -> None:
    """20,000 read records hold the word searched for (a read record keeps the words of the search it records):
    the GIN page of that word over the tenant's own events reads none of them (its own GIN, migration 0019),
    and with ``include_system`` it finds them too."""
    runtime, tenant, now, owner = filled.runtime, filled.tenant, filled.now, filled.owner
    await _add_read_records(owner, tenant.id, now)
    await owner.execute(
        "UPDATE audit_logs SET search = to_tsvector('simple', 'event 1007') WHERE tenant_id = $1"
        " AND resource_type = 'audit_log'",
        tenant.id,
    )
    await owner.execute("ANALYZE audit_logs")
    index = filled.index
    async with runtime.db.read(tenant.id) as pg:
        await bind_search(pg, index, "1007", local=False)
        found = {}
        for name, filters in (("own", LogFilters(q="1007")), ("both", LogFilters(q="1007", include_system=True))):
            sql, args = build_list_sql(tenant.id, filters, after=None, limit=50, search=index)
            plan = json.loads(await pg.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))
            found[name] = (await pg.fetch(sql, *args), await _names(owner, plan), _heap_rows_dropped(plan))
    rows, (used, seq_scanned), dropped = found["own"]
    assert [r["resource_type"] for r in rows] == ["resource_7"] and not seq_scanned  # event 1007 (1007 % 20 = 7)
    assert "ix_audit_logs_search" in used and "ix_audit_logs_service_search" not in used, used
    assert dropped == 0, dropped  # the one GIN of before fetched the 20,000 read records and dropped them
    rows, (used, seq_scanned), _ = found["both"]
    assert len(rows) == 51 and {r["resource_type"] for r in rows} == {"audit_log"}  # the read records are newer
    assert "ix_audit_logs_search" in used, used  # the service's side may be read whole: every read record matches


def _heap_rows_dropped(plan: Any) -> int:
    """Rows the plan's bitmap heap scans fetched and then dropped (by filter or recheck), summed."""
    total = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal total
        if node["Node Type"] == "Bitmap Heap Scan":
            total += int(node.get("Rows Removed by Filter", 0)) + int(node.get("Rows Removed by Index Recheck", 0))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return total


async def test_the_bounded_walk_with_a_time_window_walks_whatever_the_plan(filled: Filled) -> None:
    """The bounded walk of a ``q`` page with an ``end_time``, as a prepared statement: its generic plan too
    walks the tenant's time index (no sequential read, no sort of the window). Its size is written into the
    statement (a generic plan guesses a bound ``LIMIT $n`` at a tenth of its input); at this test's size the
    planner walks either way, so the statement's shape is checked too."""
    runtime, tenant, now, owner, index = filled.runtime, filled.tenant, filled.now, filled.owner, filled.index
    filters = LogFilters(q="1007", end_time=now + timedelta(days=365 * 70))
    walk = build_walk_sql(tenant.id, filters, index, after=None, limit=50, scan=WALK_ROWS)
    assert walk is not None
    sql, args = walk
    async with runtime.db.read(tenant.id) as pg:
        await pg.execute("SET plan_cache_mode = force_generic_plan")
        try:
            assert len(await pg.fetch(sql, *args)) == 0  # event 1007 is not among the newest 1,000
            name = await pg.fetchval("SELECT name FROM pg_prepared_statements WHERE statement = $1", sql)
            params = ", ".join(str(a) if isinstance(a, int) else "'" + str(a).replace("'", "''") + "'" for a in args)
            plan = json.loads(await pg.fetchval(f'EXPLAIN (FORMAT JSON) EXECUTE "{name}"({params})'))
        finally:
            await pg.execute("RESET plan_cache_mode")
    used, seq_scanned = await _names(owner, plan)
    assert "ix_audit_logs_time" in used and not seq_scanned, (used, seq_scanned)
    assert not _has_sort_below_limit(plan), plan
    assert f"LIMIT {WALK_ROWS}" in sql  # at this size the planner walks either way: the statement's shape too


def _has_sort_below_limit(plan: Any) -> bool:
    """Whether a Sort feeds the walk (the ordered read of up to ``WALK_ROWS`` rows) instead of an index walk."""

    def walk(node: dict[str, Any], under_walk_limit: bool) -> bool:
        if node["Node Type"] == "Sort" and under_walk_limit:
            return True
        inside = under_walk_limit or (node["Node Type"] == "Limit" and node.get("Plan Rows", 0) >= 100)
        return any(walk(child, inside) for child in node.get("Plans", ()))

    return walk(plan[0]["Plan"], False)
