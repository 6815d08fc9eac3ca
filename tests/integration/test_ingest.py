"""POST /api/v1/logs and /logs/bulk against a real PostgreSQL: round trip, masking, validation, bulk
atomicity, idempotency, per-tenant commit order, the PII vault and its audited unmask route."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.ingest_helpers import count_user_rows, decrypt, owner, raw_row, search_token

PROBLEM = "application/problem+json"


def _event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "CREATE", "resource_type": "document", "resource_id": "doc-1"}
    body.update(overrides)
    return body


async def test_round_trip_of_every_field(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    when = datetime.now(UTC) - timedelta(minutes=3)
    sent = {
        "action": "UPDATE",
        "resource_type": "invoice",
        "resource_id": "inv-42",
        "user_id": "alice",
        "session_id": "sess-1",
        "request_id": "req-9",
        "severity": "WARNING",
        "timestamp": when.astimezone(timezone_plus_two()).isoformat(),
        "ip_address": "2001:DB8::1",
        "user_agent": "curl/8.0",
        "message": "changed the total",
        "before_state": {"total": 10, "lines": [1, 2]},
        "after_state": {"total": 12, "nested": {"ok": True}},
        "metadata": {"source": "billing", "n": 3.5},
        "tenant_id": str(uuid.uuid4()),
        "id": str(uuid.uuid4()),
        "received_at": "2000-01-01T00:00:00Z",
    }
    created = await client.post("/api/v1/logs", json=sent, headers=t.user)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["tenant_id"] == t.id and out["id"] != sent["id"]
    assert uuid.UUID(out["id"]).version == 7
    for name in (
        "action",
        "resource_type",
        "resource_id",
        "user_id",
        "session_id",
        "request_id",
        "severity",
        "user_agent",
        "message",
        "before_state",
        "after_state",
        "metadata",
    ):
        assert out[name] == sent[name], name
    assert out["ip_address"] == "2001:db8::1"
    assert datetime.fromisoformat(out["timestamp"]) == when.replace(microsecond=when.microsecond)
    received = datetime.fromisoformat(out["received_at"])
    assert abs((received - datetime.now(UTC)).total_seconds()) < 60

    row = await raw_row(database, out["id"])
    assert row is not None
    assert str(row["tenant_id"]) == t.id and row["seq"] >= 1
    assert row["timestamp"] == when and row["received_at"] == received
    assert str(row["ip_address"]) == "2001:db8::1" and row["message"] == "changed the total"
    # the message's words as they are (message is a plain column), metadata words only as keyed tokens
    assert "'total'" in row["search_text"] and "billing" not in row["search_text"]
    assert f"'{await search_token(client, t.id, 'billing')}'" in row["search_text"]
    payload = await decrypt(client, t.id, row["payload"], out["id"], "payload")
    assert payload == {k: sent[k] for k in ("metadata", "before_state", "after_state")}

    read = await client.get(f"/api/v1/logs/{out['id']}", headers=t.auditor)
    assert read.status_code == 200, read.text
    assert read.json() == out


async def test_times_read_back_exactly_as_written_and_in_order(client: ApiClient) -> None:
    """Whole seconds carry no fraction, others six digits (one form on every route); a page across severities
    orders by time, not by the text of the time ("…:00Z" sorts after "…:00.5Z" as text)."""
    t = await make_tenant(client)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    written = []
    for offset, severity in [(0, "INFO"), (500_000, "ERROR"), (1, "WARNING"), (1_000_000, "INFO"), (999_999, "ERROR")]:
        when = (base + timedelta(microseconds=offset)).isoformat()
        made = await client.post("/api/v1/logs", json=_event(timestamp=when, severity=severity), headers=t.user)
        assert made.status_code == 201, made.text
        written.append(made.json())
    assert "." not in written[0]["timestamp"] and written[0]["timestamp"].endswith("Z")
    assert written[1]["timestamp"].endswith(".500000Z") and written[2]["timestamp"].endswith(".000001Z")
    page = await client.get(
        "/api/v1/logs",
        params={"severity": "INFO,ERROR,WARNING", "resource_type": "document"},
        headers=t.auditor,
    )
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    by_time = sorted(written, key=lambda e: datetime.fromisoformat(e["timestamp"]), reverse=True)
    assert [i["id"] for i in items] == [e["id"] for e in by_time]
    assert items == by_time  # every field, times included, exactly as the POST answered
    one = await client.get("/api/v1/logs", params={"severity": "INFO", "limit": "1"}, headers=t.auditor)
    cursor = one.json()["next_cursor"]
    rest = await client.get("/api/v1/logs", params={"severity": "INFO", "cursor": cursor}, headers=t.auditor)
    assert [i["id"] for i in rest.json()["items"]] == [written[0]["id"]]


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


async def test_defaults_user_id_and_minimal_event(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    created = await client.post("/api/v1/logs/", json={"action": "LOGIN", "resource_type": "session"}, headers=t.admin)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["severity"] == "INFO" and out["metadata"] is None and out["message"] is None
    runtime = client.app.state.runtime
    caller = await runtime.authenticator.authenticate(t.admin["Authorization"].split(" ", 1)[1])
    assert out["user_id"] == caller.actor
    row = await raw_row(database, out["id"])
    assert row is not None and row["payload"] is None and row["user_id"] == out["user_id"]


SECRETS = {
    "password": "hunter2-Secret!",
    "token": "tok_abcdefghijklmnop1234",
    "card": "4111 1111 1111 1111",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "aws": "AKIAIOSFODNN7EXAMPLE",
}
PII = {"email": "jane.doe@example.com", "phone": "+44 20 7946 0958"}


async def test_masking_everywhere_and_the_pii_vault(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    sent = _event(
        message=(
            f"login by {PII['email']} password={SECRETS['password']} card {SECRETS['card']} "
            f"Authorization: Bearer {SECRETS['jwt']} call {PII['phone']}"
        ),
        metadata={
            "password": SECRETS["password"],
            "api_token": SECRETS["token"],
            "contact": {"email": PII["email"], "phone": PII["phone"]},
            "note": f"key {SECRETS['aws']}",
        },
        before_state={"card_number": SECRETS["card"], "owner": PII["email"]},
        after_state={"secret": SECRETS["password"], "history": [f"called {PII['phone']}"]},
    )
    created = await client.post("/api/v1/logs", json=sent, headers=t.user)
    assert created.status_code == 201, created.text
    out = created.json()
    text = json.dumps(out)
    for value in (*SECRETS.values(), *PII.values()):
        assert value not in text, value
    assert "[REDACTED]" in out["message"] and out["metadata"]["password"] == "[REDACTED]"
    assert out["metadata"]["contact"]["email"] != PII["email"]

    row = await raw_row(database, out["id"])
    assert row is not None
    stored = json.dumps(await decrypt(client, t.id, row["payload"], out["id"], "payload"))
    for value in (*SECRETS.values(), *PII.values()):
        assert value not in row["message"], value
        assert value not in stored, value
        assert value.lower() not in row["search_text"], value
        assert value.encode() not in bytes(row["payload"]), value
    assert row["message"] == out["message"]

    conn = await owner(database)
    try:
        vault = await conn.fetchrow("SELECT * FROM event_pii WHERE event_id = $1", uuid.UUID(out["id"]))
    finally:
        await conn.close()
    assert vault is not None and PII["email"].encode() not in bytes(vault["findings"])
    findings = await decrypt(client, t.id, vault["findings"], out["id"], "pii")
    originals = {f["original"] for f in findings}
    assert PII["email"] in originals and PII["phone"] in originals
    assert not originals & set(SECRETS.values())  # secrets are discarded, never vaulted

    assert (await client.get(f"/api/v1/logs/{out['id']}/pii", headers=t.user)).status_code == 403
    assert (await client.get(f"/api/v1/logs/{out['id']}/pii", headers=t.auditor)).status_code == 403
    unmasked = await client.get(f"/api/v1/logs/{out['id']}/pii", headers=t.admin)
    assert unmasked.status_code == 200, unmasked.text
    got = unmasked.json()
    assert got["event_id"] == out["id"]
    assert {f["original"] for f in got["findings"]} == originals
    assert {f["path"].split("/")[0] for f in got["findings"]} >= {"message", "metadata", "before_state"}

    conn = await owner(database)
    try:
        audit = await conn.fetch(
            "SELECT user_id, resource_id, action FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'audit_log_pii'",
            uuid.UUID(t.id),
        )
    finally:
        await conn.close()
    assert [(a["action"], a["resource_id"]) for a in audit] == [("VIEW", out["id"])]

    other = await make_tenant(client)
    assert (await client.get(f"/api/v1/logs/{out['id']}/pii", headers=other.admin)).status_code == 404
    assert (await client.get(f"/api/v1/logs/{uuid.uuid4()}/pii", headers=t.admin)).status_code == 404


BAD_FIELDS = [
    ("timestamp", {"timestamp": "2024-01-01T10:00:00"}),
    # far in the future: a "now + 10 min" computed at collection is within the 5-minute tolerance by the time a
    # long suite reaches this test
    ("timestamp", {"timestamp": "2999-01-01T00:00:00+00:00"}),
    ("timestamp", {"timestamp": "yesterday"}),
    ("ip_address", {"ip_address": "999.1.1.1"}),
    ("ip_address", {"ip_address": "fe80::1%eth0"}),
    ("action", {"action": "create"}),
    ("action", {"action": "CREATE\n"}),
    ("action", {"action": "A" * 65}),
    ("action", {"action": None}),
    ("resource_type", {"resource_type": "r" * 65}),
    ("resource_type", {"resource_type": ""}),
    ("resource_id", {"resource_id": "x" * 257}),
    ("user_agent", {"user_agent": "u" * 1025}),
    ("severity", {"severity": "DEBUG"}),
    ("metadata", {"metadata": ["not", "an", "object"]}),
    ("before_state", {"before_state": "text"}),
    ("message", {"message": "nul \u0000 inside"}),
]


@pytest.mark.parametrize(("field", "change"), BAD_FIELDS)
async def test_each_field_rule_is_a_422_naming_the_field(
    client: ApiClient, database: Database, field: str, change: dict[str, Any]
) -> None:
    t = await make_tenant(client)
    response = await client.post("/api/v1/logs", json=_event(**change), headers=t.user)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert field in body["detail"] and body["errors"][0]["field"].startswith(field), body
    assert await count_user_rows(database, t.id) == 0


async def test_missing_required_field_malformed_json_and_size(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    missing = await client.post("/api/v1/logs", json={"resource_type": "x"}, headers=t.user)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "action", missing.text
    for bad in (b'{"action": "CREATE", ', b"not json", b'[{"action": '):
        malformed = await client.post(
            "/api/v1/logs", content=bad, headers={**t.user, "content-type": "application/json"}
        )
        assert malformed.status_code == 400, malformed.text
        assert malformed.headers["content-type"].startswith(PROBLEM)
    big = _event(message="a" * (64 * 1024))
    too_large = await client.post("/api/v1/logs", json=big, headers=t.user)
    assert too_large.status_code == 413, too_large.text

    async def chunks() -> Any:  # no Content-Length: the cap applies to the bytes read
        yield json.dumps(big).encode()[:40_000]
        yield json.dumps(big).encode()[40_000:]

    chunked = await client.post("/api/v1/logs", content=chunks(), headers=t.user)
    assert chunked.status_code == 413, chunked.text
    assert await count_user_rows(database, t.id) == 0
    assert (await client.post("/api/v1/logs", json=_event())).status_code == 401
    assert (await client.post("/api/v1/logs", json=_event(), headers=t.auditor)).status_code == 403


async def test_bulk_array_and_items_forms_keep_input_order(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    items = [_event(resource_id=f"r{i}", message=f"event {i}") for i in range(25)]
    as_array = await client.post("/api/v1/logs/bulk", json=items, headers=t.user)
    assert as_array.status_code == 201, as_array.text
    as_object = await client.post("/api/v1/logs/bulk/", json={"items": items[:3]}, headers=t.admin)
    assert as_object.status_code == 201, as_object.text
    assert as_object.json()["inserted"] == 3
    result = as_array.json()
    assert result["inserted"] == 25 and len(result["ids"]) == 25
    conn = await owner(database)
    try:
        rows = await conn.fetch(
            "SELECT id, resource_id, seq FROM audit_logs WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in result["ids"]],
        )
    finally:
        await conn.close()
    by_id = {str(r["id"]): r for r in rows}
    assert [by_id[i]["resource_id"] for i in result["ids"]] == [f"r{i}" for i in range(25)]
    seqs = [by_id[i]["seq"] for i in result["ids"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 25


@pytest.mark.parametrize("bad_index", [0, 3, 599])
async def test_bulk_is_all_or_nothing(client: ApiClient, database: Database, bad_index: int) -> None:
    t = await make_tenant(client)
    items = [_event(resource_id=f"r{i}") for i in range(600)]
    items[bad_index]["action"] = "not an action"
    response = await client.post("/api/v1/logs/bulk", json=items, headers=t.user)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["index"] == bad_index and body["errors"][0]["field"] == "action"
    assert body["detail"].startswith(f"item {bad_index}: action")
    items[bad_index] = _event(ip_address="nope")
    response = await client.post("/api/v1/logs/bulk", json=items, headers=t.user)
    assert response.status_code == 422 and response.json()["errors"][0]["index"] == bad_index
    assert await count_user_rows(database, t.id) == 0


async def test_bulk_limits(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    assert (await client.post("/api/v1/logs/bulk", json=[], headers=t.user)).status_code == 422
    assert (await client.post("/api/v1/logs/bulk", json={"items": []}, headers=t.user)).status_code == 422
    assert (await client.post("/api/v1/logs/bulk", json={"nope": 1}, headers=t.user)).status_code == 422
    too_many = [{"action": "READ", "resource_type": "x"}] * 10_001
    assert (await client.post("/api/v1/logs/bulk", json=too_many, headers=t.user)).status_code == 422
    big = [_event(), _event(message="a" * (64 * 1024))]
    response = await client.post("/api/v1/logs/bulk", json=big, headers=t.user)
    assert response.status_code == 413 and response.json()["errors"][0]["index"] == 1, response.text
    malformed = await client.post("/api/v1/logs/bulk", content=b"[{", headers=t.user)
    assert malformed.status_code == 400
    assert await count_user_rows(database, t.id) == 0
    full = [{"action": "READ", "resource_type": "x", "resource_id": str(i)} for i in range(10_000)]
    ok = await client.post("/api/v1/logs/bulk", json=full, headers=t.user)
    assert ok.status_code == 201 and ok.json()["inserted"] == 10_000
    assert await count_user_rows(database, t.id) == 10_000


async def test_idempotency_key_replays_and_conflicts(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    headers = {**t.user, "Idempotency-Key": "order-1"}
    first = await client.post("/api/v1/logs", json=_event(), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/api/v1/logs", content=json.dumps(_event(), indent=2), headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await count_user_rows(database, t.id) == 1

    conflict = await client.post("/api/v1/logs", json=_event(resource_id="other"), headers=headers)
    assert conflict.status_code == 409, conflict.text
    assert "Idempotency-Key" in conflict.json()["detail"]

    other_tenant = await make_tenant(client)  # keys are per tenant
    elsewhere = await client.post(
        "/api/v1/logs", json=_event(), headers={**other_tenant.user, "Idempotency-Key": "order-1"}
    )
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first.json()["id"]

    bulk_headers = {**t.user, "Idempotency-Key": "bulk-1"}
    b1 = await client.post("/api/v1/logs/bulk", json=[_event(), _event()], headers=bulk_headers)
    b2 = await client.post("/api/v1/logs/bulk", json=[_event(), _event()], headers=bulk_headers)
    assert b1.status_code == b2.status_code == 201 and b1.json() == b2.json()
    assert await count_user_rows(database, t.id) == 3
    bad = await client.post("/api/v1/logs", json=_event(), headers={**t.user, "Idempotency-Key": "x" * 300})
    assert bad.status_code == 400

    # An expired key (older than 24 h) no longer replays: the request is stored anew.
    conn = await owner(database)
    try:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'order-1'")
    finally:
        await conn.close()
    fresh = await client.post("/api/v1/logs", json=_event(resource_id="later"), headers=headers)
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in fresh.headers


async def test_concurrent_duplicates_insert_once(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    headers = {**t.user, "Idempotency-Key": "same-key"}
    responses = await asyncio.gather(*(client.post("/api/v1/logs", json=_event(), headers=headers) for _ in range(30)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_user_rows(database, t.id) == 1

    # Across transactions too: the writer's groups race on the key row, the loser replays the winner.
    writer = client.app.state.runtime.services["ingest"]
    writer.window = 0
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/logs/bulk", json=[_event()] * 3, headers={**t.user, "Idempotency-Key": "k2"})
            for _ in range(10)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({tuple(r.json()["ids"]) for r in responses}) == 1
    assert await count_user_rows(database, t.id) == 4


async def test_seq_is_commit_order_and_notify(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    listener = await owner(database)
    notes: list[str] = []
    await listener.add_listener("auditlog_events", lambda *args: notes.append(args[3]))
    try:
        responses = await asyncio.gather(
            *(client.post("/api/v1/logs", json=_event(resource_id=str(i)), headers=t.user) for i in range(60))
        )
        assert {r.status_code for r in responses} == {201}
        seqs = await listener.fetch(
            "SELECT seq FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'document' ORDER BY seq",
            uuid.UUID(t.id),
        )
        values = [r["seq"] for r in seqs]
        assert len(values) == 60 and len(set(values)) == 60
        last = await listener.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", uuid.UUID(t.id))
        await asyncio.sleep(0.2)
    finally:
        await listener.close()
    assert notes and all(n.startswith(f"{t.id}:") for n in notes if n.startswith(t.id))
    assert max(int(n.split(":")[1]) for n in notes if n.startswith(t.id)) == last


async def test_openapi_documents_the_bodies(client: ApiClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    post = schema["paths"]["/api/v1/logs"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert "action" in body["properties"] and "action" in body["required"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    bulk = schema["paths"]["/api/v1/logs/bulk"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(bulk["oneOf"]) == 2
    assert "/api/v1/logs/{event_id}/pii" in schema["paths"]


async def test_api_role_cannot_read_the_vault(database: Database) -> None:
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM event_pii")
    finally:
        await conn.close()


async def test_purge_job_deletes_expired_keys(client: ApiClient, database: Database) -> None:
    from jobs.idempotency import purge_idempotency_keys

    t = await make_tenant(client)
    for key in ("old", "new"):
        r = await client.post("/api/v1/logs", json=_event(), headers={**t.user, "Idempotency-Key": key})
        assert r.status_code == 201
    conn = await owner(database)
    try:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
        assert await purge_idempotency_keys({"db": client.app.state.runtime.db}) == 1
        assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["new"]
    finally:
        await conn.close()


async def test_a_database_failure_is_a_503_and_fails_only_its_tenant(client: ApiClient, database: Database) -> None:
    broken, healthy = await make_tenant(client), await make_tenant(client)
    conn = await owner(database)
    try:  # no seq row: the group's INSERT fails inside its transaction
        await conn.execute("DELETE FROM tenant_log_seq WHERE tenant_id = $1", uuid.UUID(broken.id))
    finally:
        await conn.close()
    responses = await asyncio.gather(
        *(client.post("/api/v1/logs", json=_event(), headers=t.user) for t in [broken, healthy] * 10),
        client.post("/api/v1/logs/bulk", json=[_event()] * 600, headers=broken.user),
    )
    failed, ok = [*responses[0:20:2], responses[20]], responses[1:20:2]
    assert {r.status_code for r in ok} == {201}
    for r in failed:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith(PROBLEM) and "Retry-After" in r.headers
        assert "seq" not in r.text and "SQL" not in r.text and "null value" not in r.text
    assert await count_user_rows(database, broken.id) == 0
    assert await count_user_rows(database, healthy.id) == 10
