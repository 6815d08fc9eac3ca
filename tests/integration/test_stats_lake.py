"""``GET /logs/stats`` equals a brute-force count over PostgreSQL before, during and after a lake export, and
once the events are split between the lake and the hot tail: the engine's ``events`` (lake files listed at
the snapshot plus the tail above the watermark of that same snapshot) never counts an event twice or drops
one, whichever step the export has reached.

The export runs in a thread of its own (its own event loop and connection) and its step hook holds it at
the first occurrence of every step of its first run (``EXPORT_STEPS``: a batch read, files staged, files
durable but not listed, listed in the still-open manifest transaction, committed with the watermark moved)
while the test asks the API for stats and counts the rows in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from analytics.lake import EXPORT_STEPS, LakeStore, export_tenant
from tests.conftest import ApiClient, Database, TenantFixture, make_settings, make_tenant, running_app
from tests.integration.analytics_data import brute_force_stats, post_events, sample_events, stats_counts


async def _stats(client: ApiClient, tenant: TenantFixture, start: datetime, end: datetime) -> dict[str, Any]:
    params = {"start_time": start.isoformat(), "end_time": end.isoformat(), "interval": "day"}
    response = await client.get("/api/v1/logs/stats", params=params, headers=tenant.auditor)
    assert response.status_code == 200, response.text
    return stats_counts(response.json())


async def _brute_force(database: Database, tenant_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    return await brute_force_stats(database, tenant_id, start, end, "day")


async def _lake_state(database: Database, tenant_id: str) -> tuple[int, int, int]:
    """(watermark, rows in live lake files, highest seq in PostgreSQL)."""
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        tid = uuid.UUID(tenant_id)
        watermark = await conn.fetchval(
            "SELECT coalesce(max(last_seq), 0) FROM lake_watermarks WHERE tenant_id = $1", tid
        )
        listed = await conn.fetchval(
            "SELECT coalesce(sum(rows), 0) FROM lake_files WHERE tenant_id = $1 AND retired_at IS NULL", tid
        )
        top = await conn.fetchval("SELECT max(seq) FROM audit_logs WHERE tenant_id = $1", tid)
    finally:
        await conn.close()
    return int(watermark), int(listed), int(top)


class _PausingExport:
    """``export_tenant`` in a thread, held at the first occurrence of each step until the test releases it."""

    def __init__(self, dsn: str, lake_url: str, keyrings: Any, tenant_id: uuid.UUID) -> None:
        self.dsn, self.lake_url, self.keyrings, self.tenant_id = dsn, lake_url, keyrings, tenant_id
        self.paused_at: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.seen: set[str] = set()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _hook(self, step: str) -> None:
        if step in self.seen:
            return
        self.seen.add(step)
        self.paused_at = step
        self.resume.clear()
        self.paused.set()
        assert self.resume.wait(60), "the test never released the export"

    def _run(self) -> None:
        async def export() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:  # several runs of 40 events: the first one's steps are paused at
                await export_tenant(conn, LakeStore.from_url(self.lake_url), self.keyrings, self.tenant_id,
                                    batch_rows=16, run_rows=40, on_step=self._hook)  # fmt: skip
            finally:
                await conn.close()

        try:
            asyncio.run(export())
        except BaseException as exc:  # reported to the test
            self.error = exc
        finally:
            self.paused_at = None
            self.paused.set()

    async def next_pause(self) -> str | None:
        assert await asyncio.to_thread(self.paused.wait, 60), "the export neither paused nor ended"
        self.paused.clear()
        return self.paused_at

    def release(self) -> None:
        self.resume.set()


async def test_stats_equal_a_brute_force_count_before_during_and_after_a_lake_export(
    database: Database, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path)
    now = datetime.now(UTC)
    start, end = now - timedelta(days=30), now + timedelta(hours=1)
    async with running_app(settings) as client:
        tenant = await make_tenant(client)
        other = await make_tenant(client)
        await post_events(client, tenant, sample_events(90, now=now))  # one every 7 h: ~26 days, ~27 day files
        await post_events(client, other, sample_events(40, now=now))
        before = await _stats(client, tenant, start, end)
        assert before == await _brute_force(database, tenant.id, start, end)
        assert before["total"] == 90

        export = _PausingExport(
            database.dsn(database.api_url),
            settings.lake_location,
            client.app.state.runtime.keyrings,
            uuid.UUID(tenant.id),
        )
        export.thread.start()
        paused: list[str] = []
        try:
            while (step := await export.next_pause()) is not None:
                paused.append(step)
                during = await _stats(client, tenant, start, end)
                assert during == await _brute_force(database, tenant.id, start, end), f"paused at {step}"
                if step == "committed":  # the first run is in: 40 events in the lake, the rest in the tail
                    watermark, listed, top = await _lake_state(database, tenant.id)
                    assert 0 < watermark < top and listed == watermark
                export.release()
        finally:
            export.release()
            await asyncio.to_thread(export.thread.join, 60)
        assert export.error is None, export.error
        assert paused == list(EXPORT_STEPS)

        # after: everything in the lake; then more events, which stay in the hot tail
        after = await _stats(client, tenant, start, end)
        assert after == await _brute_force(database, tenant.id, start, end)
        await post_events(client, tenant, sample_events(25, now=now - timedelta(hours=3)))
        watermark, listed, top = await _lake_state(database, tenant.id)
        assert listed == watermark >= 90 and top > watermark  # split between the lake and the hot tail
        split = await _stats(client, tenant, start, end)
        assert split == await _brute_force(database, tenant.id, start, end)
        assert split["total"] == 115
        assert (await _stats(client, other, start, end)) == await _brute_force(database, other.id, start, end)
