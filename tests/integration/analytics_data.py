"""A varied set of events for the stats and export tests (every field, several days, PII to mask)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ApiClient, TenantFixture

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
