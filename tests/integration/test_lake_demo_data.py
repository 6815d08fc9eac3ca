"""Demo data (development only): the sample tenants get realistic events through the write path, in the
background, and the lake job runs once so every feature shows something on first start."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from app.bootstrap import DEMO_TENANTS
from app.demo_data import MARKER, _seed_pending, demo_events
from tests.conftest import Database, make_settings, running_app


def test_demo_events_are_varied_and_within_30_days() -> None:
    events = list(demo_events("Resola", 3000))
    assert len(events) == 3000
    assert events == sorted(events, key=lambda e: e["timestamp"])
    actions = {e["action"] for e in events}
    assert {"LOGIN", "LOGIN_FAILED", "CREATE", "READ", "UPDATE", "DELETE"} <= actions
    assert {e.get("severity", "INFO") for e in events} == {"INFO", "WARNING", "ERROR", "CRITICAL"}
    assert {"invoice", "customer", "document", "project", "session"} <= {e["resource_type"] for e in events}
    assert any("before_state" in e and "after_state" in e for e in events)
    assert any("metadata" in e for e in events)


async def test_sample_tenants_are_seeded_once_and_exported(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, demo_data=True, lake_url=str(tmp_path / "lake"))
    async with running_app(settings) as client:  # bootstrap creates the sample tenants and the marker
        assert (tmp_path / MARKER).exists()
        runtime = client.app.state.runtime
        started = time.monotonic()
        await _seed_pending(runtime, count=1500)
        elapsed = time.monotonic() - started
        assert not (tmp_path / MARKER).exists()
        await _seed_pending(runtime, count=1500)  # nothing pending: no second seeding
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        rows = await conn.fetch(
            "SELECT t.name, s.last_seq, coalesce(w.last_seq, 0) AS lake, "
            " (SELECT count(DISTINCT severity) FROM audit_logs a WHERE a.tenant_id = t.id) AS severities"
            " FROM tenants t JOIN tenant_log_seq s ON s.tenant_id = t.id"
            " LEFT JOIN lake_watermarks w ON w.tenant_id = t.id WHERE t.name = ANY($1::text[])",
            list(DEMO_TENANTS),
        )
    finally:
        await conn.close()
    assert {r["name"] for r in rows} == set(DEMO_TENANTS)
    for r in rows:
        assert 1500 <= r["last_seq"] < 1600, r  # the demo events plus the users' creation
        assert r["lake"] == r["last_seq"], r  # the lake job ran once, after seeding
        assert r["severities"] == 4
    assert elapsed < 60
