"""A fixed data set for the chat tests, with the expected answers computed in Python (never by the engine)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ApiClient, TenantFixture
from tests.integration.analytics_data import post_events

ACTIONS = ("LOGIN", "LOGIN_FAILED", "UPDATE", "DELETE", "CREATE", "PAYMENT_FAILED")
TYPES = ("document", "invoice", "session")
SEVERITIES = ("INFO", "WARNING", "ERROR", "CRITICAL")
USERS = ("alice", "bob", "carol", "u-7")
JULY = datetime(2025, 7, 1, tzinfo=UTC)


def chat_events(now: datetime) -> list[dict[str, Any]]:
    """100 events from 2025-07-01 every 7 hours, then 20 in the last 40 hours before ``now``."""
    out: list[dict[str, Any]] = []
    for i in range(120):
        ts = JULY + timedelta(hours=7 * i) if i < 100 else now - timedelta(hours=2 * (i - 100), minutes=1)
        event: dict[str, Any] = {
            "action": ACTIONS[i % 6],
            "resource_type": TYPES[i % 3],
            "resource_id": f"r-{i % 5}",
            "user_id": USERS[i % 4],
            "severity": SEVERITIES[(i * 3 + i // 6) % 4],
            "timestamp": ts.isoformat(),
            "message": f"event number {i}",
        }
        if i % 2:
            event["ip_address"] = f"10.0.0.{i % 3 + 1}"
        if i % 3 == 0:
            event["metadata"] = {"amount": i}
        elif i % 5 == 0:
            event["metadata"] = {"reason": "policy"}
        out.append(event)
    return out


async def seed(client: ApiClient, tenant: TenantFixture, now: datetime) -> list[dict[str, Any]]:
    events = chat_events(now)
    ids = await post_events(client, tenant, events)
    for event, event_id in zip(events, ids, strict=True):
        event["id"] = event_id
        event["ts"] = datetime.fromisoformat(event["timestamp"])
    return events


def count(events: list[dict[str, Any]], *preds: Callable[[dict[str, Any]], bool]) -> int:
    return sum(1 for e in events if all(p(e) for p in preds))


def by(events: list[dict[str, Any]], field: str, *preds: Callable[[dict[str, Any]], bool]) -> Counter[Any]:
    return Counter(e.get(field) for e in events if all(p(e) for p in preds))


def between(start: datetime, end: datetime) -> Callable[[dict[str, Any]], bool]:
    return lambda e: start <= e["ts"] < end


def since(start: datetime) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["ts"] >= start


def eq(field: str, *values: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get(field) in values


def failed(e: dict[str, Any]) -> bool:
    return "FAIL" in e["action"]
