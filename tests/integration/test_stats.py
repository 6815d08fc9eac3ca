"""``GET /api/v1/logs/stats`` equals a brute-force count over PostgreSQL (owner connection, no engine), with
and without filters, and is an audited read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.analytics_data import brute_force_stats, post_events, sample_events, stats_counts


async def test_stats_equal_a_brute_force_count(client: ApiClient, database: Database) -> None:
    a, b = await make_tenant(client), await make_tenant(client)
    await post_events(client, a, sample_events(80))
    await post_events(client, b, sample_events(30))
    now = datetime.now(UTC)
    start, end = now - timedelta(days=12), now + timedelta(minutes=1)
    window = {"start_time": start.isoformat(), "end_time": end.isoformat(), "interval": "hour"}
    response = await client.get("/api/v1/logs/stats", params=window, headers=a.auditor)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = await brute_force_stats(database, a.id, start, end)
    assert 0 < expected["total"] < 80
    assert stats_counts(body) == expected
    first, last = (t.replace(minute=0, second=0, microsecond=0) for t in (start, end))
    hours = int((last - first).total_seconds() // 3600) + 1  # 289, or 290 when end crosses an hour
    assert len(body["series"]) == hours  # every hour of the window, empty ones as 0
    filtered = await client.get(
        "/api/v1/logs/stats", params={**window, "severity": ["ERROR", "CRITICAL"]}, headers=a.auditor
    )
    assert stats_counts(filtered.json()) == await brute_force_stats(
        database, a.id, start, end, severity=("ERROR", "CRITICAL")
    )
    # default window: the last 30 days, by day
    default = (await client.get("/api/v1/logs/stats", headers=a.auditor)).json()
    assert default["interval"] == "day" and len(default["series"]) in (30, 31)
    assert default["total"] == (await brute_force_stats(database, a.id, now - timedelta(days=30), now))["total"]


async def test_stats_are_audited_and_validate(client: ApiClient) -> None:
    a = await make_tenant(client)
    await post_events(client, a, sample_events(10))
    for params in ({"interval": "week"}, {"start_time": "yesterday"}, {"start_time": "2020-01-01T00:00:00Z",
                   "end_time": "2026-01-01T00:00:00Z", "interval": "hour"}):  # fmt: skip
        bad = await client.get("/api/v1/logs/stats", params=params, headers=a.user)
        assert bad.status_code == 422, (params, bad.text)
    ok = await client.get("/api/v1/logs/stats", headers=a.user)
    assert ok.status_code == 200
    await client.app.state.runtime.services["read_audit"].flush()
    records = (
        await client.get("/api/v1/logs", params={"resource_type": "audit_log", "action": "QUERY"}, headers=a.admin)
    ).json()["items"]
    assert len(records) == 1 and records[0]["metadata"]["route"] == "/api/v1/logs/stats"
    assert records[0]["metadata"]["count"] == ok.json()["total"]
