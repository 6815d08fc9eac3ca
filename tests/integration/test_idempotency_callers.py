"""Idempotency-Key is scoped per tenant AND caller (issue 14, finding 5): one caller's key never answers
another caller's request, so two callers sending the same key and body are both recorded."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.ingest_helpers import owner

BODY = {"action": "APPROVE", "resource_type": "invoice", "resource_id": "inv-7"}


async def _events(database: Database, tenant_id: str) -> list[dict[str, Any]]:
    conn = await owner(database)
    try:
        rows = await conn.fetch(
            "SELECT id, user_id FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'invoice'",
            uuid.UUID(tenant_id),
        )
    finally:
        await conn.close()
    return [{"id": str(r["id"]), "user_id": r["user_id"]} for r in rows]


async def test_two_callers_with_one_key_are_both_recorded(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    key = await client.post("/api/v1/api-keys", json={"name": "ci", "role": "User"}, headers=t.admin)
    assert key.status_code == 201, key.text
    callers = {"user": t.user, "admin": t.admin, "key": {"X-API-Key": key.json()["key"]}}

    first: dict[str, dict[str, Any]] = {}
    for name, headers in callers.items():
        response = await client.post("/api/v1/logs", json=BODY, headers={**headers, "Idempotency-Key": "k-1"})
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers, name
        first[name] = response.json()
    assert len({e["id"] for e in first.values()}) == 3
    assert len({e["user_id"] for e in first.values()}) == 3
    assert first["key"]["user_id"] == key.json()["id"]

    # Each replay returns the caller's own event.
    for name, headers in callers.items():
        again = await client.post("/api/v1/logs", json=BODY, headers={**headers, "Idempotency-Key": "k-1"})
        assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first[name]
    stored = await _events(database, t.id)
    assert sorted(e["id"] for e in stored) == sorted(e["id"] for e in first.values())

    # A key used by one caller with a body does not make another caller's different body a 409.
    other = await client.post(
        "/api/v1/logs", json={**BODY, "resource_id": "inv-8"}, headers={**t.user, "Idempotency-Key": "k-2"}
    )
    mine = await client.post("/api/v1/logs", json=BODY, headers={**t.admin, "Idempotency-Key": "k-2"})
    assert other.status_code == mine.status_code == 201


async def test_callers_racing_in_one_group_each_get_their_own(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    bulk = [BODY, {**BODY, "resource_id": "inv-9"}]
    requests = [
        client.post("/api/v1/logs/bulk", json=bulk, headers={**headers, "Idempotency-Key": "race"})
        for headers in (t.user, t.admin)
        for _ in range(5)
    ]
    responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses} == {201}
    by_user = {tuple(r.json()["ids"]) for r in responses[:5]}
    by_admin = {tuple(r.json()["ids"]) for r in responses[5:]}
    assert len(by_user) == len(by_admin) == 1 and by_user != by_admin
    assert len(await _events(database, t.id)) == 4
