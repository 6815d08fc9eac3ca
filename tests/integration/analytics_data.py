"""A varied set of events for the stats and export tests (every field, several days, PII to mask), and the
stats those tests expect, counted straight from PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from tests.conftest import ApiClient, Database, TenantFixture

ACTIONS = ("CREATE", "UPDATE", "DELETE", "LOGIN")
TYPES = ("document", "invoice", "user")
SEVERITIES = ("INFO", "WARNING", "ERROR", "CRITICAL")


def sample_events(n: int = 60, *, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    out = []
    for i in range(n):
        event: dict[str, Any] = {
            "action": ACTIONS[i % 4],
            "resource_type": TYPES[i % 3],
            "resource_id": f"r-{i % 7}",
            "user_id": f"user-{i % 5}",
            "severity": SEVERITIES[(i * 7) % 4],
            "timestamp": (now - timedelta(hours=7 * i, microseconds=0 if i % 2 else 1234)).isoformat(),
        }
        if i % 3 == 0:
            event["session_id"] = f"s-{i % 4}"
            event["request_id"] = f"req-{i % 6}"
            event["ip_address"] = f"10.0.{i % 3}.{i}" if i % 2 else f"2001:db8::{i:x}"
            event["user_agent"] = f'agent/{i}, "quoted"'
        if i % 2 == 0:
            event["message"] = (
                f"invoice paid by customer {i} contact alice{i}@example.com"
                if i % 4 == 0
                else (f"report,{i}\nsecond line")
            )
            event["metadata"] = {"amount": i * 10, "tags": ["a", "b"], "nested": {"k": f"v{i}"}, "é": "ü"}
        if i % 5 == 0:
            event["before_state"] = {"status": "draft", "n": i}
            event["after_state"] = {"status": "final", "n": i + 1, "password": "hunter2"}
        out.append(event)
    return out


async def post_events(client: ApiClient, tenant: TenantFixture, events: list[dict[str, Any]]) -> list[str]:
    response = await client.post("/api/v1/logs/bulk", json=events, headers=tenant.admin)
    assert response.status_code == 201, response.text
    ids: list[str] = response.json()["ids"]
    return ids


async def listed_ids(client: ApiClient, headers: dict[str, str], params: dict[str, Any]) -> list[str]:
    """Every id ``GET /logs`` lists with ``params`` (the oracle for filters)."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/logs", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            return ids


async def brute_force_stats(
    database: Database,
    tenant_id: str,
    start: datetime,
    end: datetime,
    interval: Literal["hour", "day"] = "hour",
    **where: tuple[str, ...],
) -> dict[str, Any]:
    """What ``GET /logs/stats`` must count of the tenant's client events from ``start`` to ``end`` whose
    columns (``severity=("ERROR", ...)``) have one of ``where``'s values: counted straight from ``audit_logs``
    (owner connection, no engine, no lake), the series by ``interval`` without its empty buckets."""
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        rows = await conn.fetch(
            'SELECT action, severity, resource_type, "timestamp" FROM audit_logs WHERE tenant_id = $1'
            " AND \"timestamp\" BETWEEN $2 AND $3 AND resource_type <> 'audit_log'"
            " AND resource_type NOT ILIKE 'auditlog.%'",
            uuid.UUID(tenant_id),
            start,
            end,
        )
    finally:
        await conn.close()
    rows = [r for r in rows if all(r[k] in v for k, v in where.items())]
    bucket = "%Y-%m-%dT%H:00:00Z" if interval == "hour" else "%Y-%m-%dT00:00:00Z"
    return {
        "total": len(rows),
        "by_action": dict(Counter(r["action"] for r in rows)),
        "by_severity": dict(Counter(r["severity"] for r in rows)),
        "by_resource_type": dict(Counter(r["resource_type"] for r in rows)),
        "series": dict(Counter(r["timestamp"].astimezone(UTC).strftime(bucket) for r in rows)),
    }


def stats_counts(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``GET /logs/stats`` body that :func:`brute_force_stats` counts (empty buckets left out)."""
    return {
        "total": body["total"],
        "by_action": body["by_action"],
        "by_severity": body["by_severity"],
        "by_resource_type": body["by_resource_type"],
        "series": {p["bucket"]: p["count"] for p in body["series"] if p["count"]},
    }
