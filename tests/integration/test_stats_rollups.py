"""Stats from the lake's hourly rollups (``analytics.window_counts``) equal a brute-force count of every event,
whatever the window: partial hours at the edges (to the microsecond, both bounds inclusive), windows inside one
hour, hour and day buckets, the filters the rollups hold; with events split between the lake and the hot tail
(including tail events in hours the lake already covers); after retention removed the lake's events from
PostgreSQL (those edges are then read from the lake files); for a lake written before the rollups existed
(scanned until the exporter backfills it, then equal again); after an export crashed at each of its steps; and
with another tenant's events beside them."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from analytics.lake import EXPORT_STEPS, LakeStore, export_tenant
from analytics.window_counts import count_window
from db.event_filters import LogFilters, is_service_resource_type
from jobs.retention import archive_and_purge
from tests.conftest import Database, make_settings, make_tenant, running_app
from tests.integration.lake_support import api_conn, lake_store, post_events, s3_endpoint

__all__ = ["lake_store", "s3_endpoint"]  # fixtures used by this module

ACTIONS = ("CREATE", "UPDATE", "DELETE", "LOGIN")
SEVERITIES = ("INFO", "WARNING", "ERROR", "CRITICAL")
TYPES = ("invoice", "document", "user")
FILTER_SETS: list[dict[str, Any]] = [
    {},
    {"action": ("LOGIN",)},
    {"action": ("CREATE", "DELETE"), "severity": ("ERROR", "CRITICAL")},
    {"resource_type": ("invoice",), "exclude_action": ("UPDATE",)},
    {"exclude_resource_type": ("document",), "severity": ("INFO",)},
    {"include_system": True},
]


def _events(rng: random.Random, n: int, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    span = int((hi - lo).total_seconds() * 1_000_000)
    return [
        {
            "action": rng.choice(ACTIONS),
            "resource_type": rng.choice(TYPES),
            "severity": rng.choice(SEVERITIES),
            "user_id": f"user-{rng.randint(1, 5)}",
            "timestamp": (lo + timedelta(microseconds=rng.randrange(span))).isoformat(),
            "message": f"event {i}",
        }
        for i in range(n)
    ]


async def _all_events(database: Database, tenant_id: uuid.UUID) -> list[tuple[str, str, str, datetime]]:
    """(action, severity, resource_type, timestamp) of every event of the tenant in PostgreSQL (owner), once the
    service events recorded in the background (logins, reads) have landed: two reads 0.3 s apart agree."""
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    sql = 'SELECT action, severity, resource_type, "timestamp" FROM audit_logs WHERE tenant_id = $1 ORDER BY seq'
    try:
        rows = await conn.fetch(sql, tenant_id)
        while True:
            await asyncio.sleep(0.3)
            again = await conn.fetch(sql, tenant_id)
            if again == rows:
                break
            rows = again
    finally:
        await conn.close()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _oracle(events: list[tuple[str, str, str, datetime]], filters: LogFilters, interval: str) -> dict[str, Any]:
    assert filters.start_time is not None and filters.end_time is not None
    system = filters.include_system or any(is_service_resource_type(t) for t in filters.resource_type)
    rows = [
        e
        for e in events
        if filters.start_time <= e[3] <= filters.end_time
        and (not filters.action or e[0] in filters.action)
        and (not filters.severity or e[1] in filters.severity)
        and (not filters.resource_type or e[2] in filters.resource_type)
        and e[0] not in filters.exclude_action
        and e[2] not in filters.exclude_resource_type
        and (system or not is_service_resource_type(e[2]))
    ]

    def bucket(ts: datetime) -> datetime:
        ts = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return ts.replace(hour=0) if interval == "day" else ts

    return {
        "total": len(rows),
        "by_action": dict(Counter(r[0] for r in rows)),
        "by_severity": dict(Counter(r[1] for r in rows)),
        "by_resource_type": dict(Counter(r[2] for r in rows)),
        "series": dict(Counter(bucket(r[3]) for r in rows)),
    }


def _plain(counts: Any) -> dict[str, Any]:
    def nonzero(c: Counter[Any]) -> dict[Any, int]:
        return {k: v for k, v in c.items() if v}

    return {
        "total": counts.total,
        "by_action": nonzero(counts.by_action),
        "by_severity": nonzero(counts.by_severity),
        "by_resource_type": nonzero(counts.by_resource_type),
        "series": nonzero(counts.series),
    }


def _windows(rng: random.Random, events: list[tuple[str, str, str, datetime]], lo: datetime, hi: datetime) -> list:
    """Windows whose bounds fall on events (inclusive bounds), on hour boundaries, inside one hour, anywhere."""
    stamps = sorted(e[3] for e in events)
    hour = lo.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    one = stamps[len(stamps) // 2]
    out = [
        (lo - timedelta(days=1), hi + timedelta(days=1)),  # everything
        (one, one),  # one instant: the event there, and only it
        (hour, hour + timedelta(days=2)),  # hour-aligned both ends (the end is inclusive)
        (hour, hour + timedelta(days=2) - timedelta(microseconds=1)),  # whole hours only
        (hour + timedelta(minutes=10), hour + timedelta(minutes=50)),  # inside one hour
        (hour + timedelta(minutes=10), hour + timedelta(hours=1, minutes=5)),  # two partial hours, no whole one
    ]
    for _ in range(14):
        a, b = sorted(rng.sample(stamps, 2))
        out.append((a, b))  # bounds on events
        x = lo + (hi - lo) * rng.random()
        out.append((x, x + timedelta(hours=rng.uniform(0.2, 100))))  # anywhere, to the microsecond
    return out


async def _check_windows(
    pg: asyncpg.Connection,
    tenant_id: uuid.UUID,
    store: LakeStore,
    events: list[tuple[str, str, str, datetime]],
    windows: list[tuple[datetime, datetime]],
    rng: random.Random,
) -> int:
    """Every window, both intervals, a filter set each: rollup counts == oracle. Returns edges read from the lake."""
    from_lake = 0
    for i, (start, end) in enumerate(windows):
        for interval in ("day", "hour"):
            filters = LogFilters(start_time=start, end_time=end, **FILTER_SETS[(i + len(interval)) % len(FILTER_SETS)])
            counts = await count_window(pg, tenant_id, filters, interval, store)
            assert counts is not None, filters
            assert _plain(counts) == _oracle(events, filters, interval), (start, end, interval, filters)
            from_lake += counts.edges_from_lake
        if i % 5 == 0:
            filters = LogFilters(start_time=start, end_time=end, **rng.choice(FILTER_SETS))
            counts = await count_window(pg, tenant_id, filters, "day", store)
            assert counts is not None and _plain(counts) == _oracle(events, filters, "day")
    return from_lake


async def test_rollup_counts_equal_a_brute_force_count_across_lake_tail_and_retention(
    database: Database, tmp_path: Path, lake_store: LakeStore
) -> None:
    rng = random.Random(1234)
    settings = make_settings(database, tmp_path, lake_url=lake_store.url, s3_endpoint_url=lake_store.endpoint_url)
    now = datetime.now(UTC)
    lo, hi = now - timedelta(days=9), now - timedelta(minutes=5)
    async with running_app(settings) as client:
        t, other = await make_tenant(client), await make_tenant(client)
        tid = uuid.UUID(t.id)
        keyrings = client.app.state.runtime.keyrings
        await post_events(client, t.id, _events(rng, 900, lo, hi))
        await post_events(client, other.id, _events(rng, 300, lo, hi))
        pg = await api_conn(database)
        try:
            # all in the hot tail (no lake yet)
            events = await _all_events(database, tid)
            await _check_windows(pg, tid, lake_store, events, _windows(rng, events, lo, hi)[:8], rng)

            for tenant in (tid, uuid.UUID(other.id)):
                await export_tenant(pg, lake_store, keyrings, tenant, batch_rows=100, run_rows=400)
            # more events in hours the lake already covers: the lake and the tail share hours
            await post_events(client, t.id, _events(rng, 250, lo, hi))
            events = await _all_events(database, tid)
            assert await _check_windows(pg, tid, lake_store, events, _windows(rng, events, lo, hi), rng) == 0

            # the API answers the same (day buckets, default filters)
            params = {"start_time": lo.isoformat(), "end_time": hi.isoformat(), "interval": "day"}
            body = (await client.get("/api/v1/logs/stats", params=params, headers=t.auditor)).json()
            expected = _oracle(events, LogFilters(start_time=lo, end_time=hi), "day")
            assert body["total"] == expected["total"] and body["by_action"] == expected["by_action"]
            series = {datetime.fromisoformat(p["bucket"]): p["count"] for p in body["series"] if p["count"]}
            assert series == expected["series"]

            events = await _all_events(database, tid)  # now with the read record of that request
            # retention: everything before `before` leaves PostgreSQL (exported first); the lake still counts
            before = lo + timedelta(days=4, minutes=17, microseconds=5)
            purged = await archive_and_purge(pg, lake_store, keyrings, tid, before)
            assert purged.deleted > 0
            assert len(await _all_events(database, tid)) < len(events)
            # then tail events in the purged hours, which only PostgreSQL holds
            late = _events(rng, 60, lo, before)
            await post_events(client, t.id, late)
            events += [(e["action"], e["severity"], e["resource_type"], datetime.fromisoformat(e["timestamp"]))
                       for e in late]  # fmt: skip
            windows = _windows(rng, events, lo, hi)
            windows += [(lo + timedelta(hours=h, minutes=7), hi) for h in range(0, 90, 11)]  # edges in purged hours
            assert await _check_windows(pg, tid, lake_store, events, windows, rng) > 0
        finally:
            await pg.close()


async def test_a_lake_without_rollups_is_scanned_until_backfilled_and_isolated_by_tenant(
    database: Database, tmp_path: Path
) -> None:
    rng = random.Random(99)
    store = LakeStore.from_url(str(tmp_path / "lake"))
    settings = make_settings(database, tmp_path, lake_url=store.url)
    now = datetime.now(UTC)
    lo, hi = now - timedelta(days=3), now - timedelta(minutes=1)
    async with running_app(settings) as client:
        t, other = await make_tenant(client), await make_tenant(client)
        tid, oid = uuid.UUID(t.id), uuid.UUID(other.id)
        keyrings = client.app.state.runtime.keyrings
        await post_events(client, t.id, _events(rng, 400, lo, hi))
        await post_events(client, other.id, _events(rng, 150, lo, hi))
        owner = await asyncpg.connect(database.dsn(database.owner_url))
        pg = await api_conn(database)
        try:
            for tenant in (tid, oid):
                await export_tenant(pg, store, keyrings, tenant, batch_rows=64)
            rollups = (
                "SELECT r.day, r.action, r.severity, r.resource_type, r.events, h.hours FROM lake_rollups r JOIN "
                "lake_rollup_hours h USING (tenant_id, day, action, severity, resource_type) WHERE r.tenant_id = $1"
            )
            written = sorted(map(tuple, await owner.fetch(rollups, tid)))
            assert sum(r[4] for r in written) == await owner.fetchval(
                "SELECT last_seq FROM lake_watermarks WHERE tenant_id = $1", tid
            )
            # another tenant's rollups are invisible under RLS
            async with pg.transaction(readonly=True):
                await pg.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(oid))
                seen = await pg.fetch(
                    "SELECT DISTINCT tenant_id FROM lake_rollups UNION SELECT DISTINCT tenant_id FROM lake_rollup_hours"
                )
            assert [r[0] for r in seen] == [oid]

            # a lake written before the rollups: scanned (None here, the engine in the route) until backfilled
            await owner.execute("DELETE FROM lake_rollups WHERE tenant_id = $1", tid)
            await owner.execute("DELETE FROM lake_rollup_hours WHERE tenant_id = $1", tid)
            await owner.execute("UPDATE lake_watermarks SET rollup_from = last_seq WHERE tenant_id = $1", tid)
            window = LogFilters(start_time=lo, end_time=hi)
            assert await count_window(pg, tid, window, "day", store) is None
            events = await _all_events(database, tid)
            params = {"start_time": lo.isoformat(), "end_time": hi.isoformat(), "interval": "hour"}
            body = (await client.get("/api/v1/logs/stats", params=params, headers=t.auditor)).json()
            assert body["total"] == _oracle(events, window, "hour")["total"]
            await post_events(client, t.id, _events(rng, 30, lo, hi))
            await client.app.state.runtime.services["read_audit"].flush()  # the stats read's record, before the export
            await export_tenant(pg, store, keyrings, tid)  # backfills from the files, then exports the 30
            assert await owner.fetchval("SELECT rollup_from FROM lake_watermarks WHERE tenant_id = $1", tid) == 0
            events = await _all_events(database, tid)
            counts = await count_window(pg, tid, window, "hour", store)
            assert counts is not None and _plain(counts) == _oracle(events, window, "hour")
            assert sum(r[4] for r in await owner.fetch(rollups, tid)) == len(events)
            assert sorted(map(tuple, await owner.fetch(rollups, oid))) != []
            # filters the rollups do not hold are left to the engine
            assert (
                await count_window(pg, tid, LogFilters(start_time=lo, end_time=hi, user_id=("user-1",)), "day") is None
            )
        finally:
            await pg.close()
            await owner.close()


@pytest.mark.parametrize("step", EXPORT_STEPS)
async def test_rollups_count_each_event_once_when_the_export_crashes(
    database: Database, tmp_path: Path, step: str
) -> None:
    rng = random.Random(7)
    store = LakeStore.from_url(str(tmp_path / "lake"))
    settings = make_settings(database, tmp_path, lake_url=store.url)
    now = datetime.now(UTC)
    lo, hi = now - timedelta(days=2), now - timedelta(minutes=1)

    class Crash(Exception):
        pass

    def crash(name: str) -> None:
        if name == step:
            raise Crash(step)

    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        keyrings = client.app.state.runtime.keyrings
        await post_events(client, t.id, _events(rng, 200, lo, hi))
        pg = await api_conn(database)
        owner = await asyncpg.connect(database.dsn(database.owner_url))
        try:
            await export_tenant(pg, store, keyrings, tid, batch_rows=50)
            await post_events(client, t.id, _events(rng, 150, lo, hi))
            with pytest.raises(Crash):
                await export_tenant(pg, store, keyrings, tid, batch_rows=50, on_step=crash)
            await export_tenant(pg, store, keyrings, tid, batch_rows=50)
            expected: dict[tuple[Any, ...], list[int]] = {}
            for action, severity, resource_type, ts in await _all_events(database, tid):
                ts = ts.astimezone(UTC)
                expected.setdefault((ts.date(), action, severity, resource_type), [0] * 24)[ts.hour] += 1
            rows = await owner.fetch(
                "SELECT r.day, r.action, r.severity, r.resource_type, h.hours, r.events FROM lake_rollups r "
                "JOIN lake_rollup_hours h USING (tenant_id, day, action, severity, resource_type) WHERE r.tenant_id = $1",
                tid,
            )
        finally:
            await pg.close()
            await owner.close()
    assert {(r[0], r[1], r[2], r[3]): list(r[4]) for r in rows} == expected
    assert all(r[5] == sum(r[4]) for r in rows)
