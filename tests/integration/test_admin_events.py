"""Administrative actions are events of the tenant they affect (issue 14, finding 6): tenant created, user
created (by the operator or an Admin), API key created and revoked, data key rotated (by a caller, on
schedule, or by ``auditlog rotate-keys``), each with its actor, read back with ``include_system=true``
and never found in another tenant's log."""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from app.audit_trail.jobs_plugin import ServiceEventsPlugin, service_events_plugin
from app.audit_trail.service_events import SERVICE_ACTOR
from jobs.tasks import rotate_data_keys
from tests.conftest import ApiClient, TenantFixture, make_tenant, operator_headers

ADMIN_TYPES = ["auditlog.tenant", "auditlog.user", "auditlog.api_key", "auditlog.data_key"]


def _subject(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def _admin_events(client: ApiClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/logs", params={"include_system": "true", "resource_type": ADMIN_TYPES, "limit": 1000}, headers=headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items[::-1]  # oldest first


def _actions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action"], e["user_id"]) for e in events]


async def test_each_administrative_action_is_in_its_tenant_log(client: ApiClient) -> None:
    op = await operator_headers(client)
    operator_id = _subject(op)
    t = await make_tenant(client)  # the operator creates the tenant, then admin, user and auditor
    other = await make_tenant(client)
    admin_id = _subject(t.admin)

    events = await _admin_events(client, t.admin)
    assert _actions(events) == [("TENANT_CREATED", operator_id)] + [("USER_CREATED", operator_id)] * 3
    created = events[0]
    assert created["resource_type"] == "auditlog.tenant" and created["resource_id"] == t.id
    assert created["metadata"]["name"] == t.name
    users = events[1:]
    assert [u["metadata"]["username"] for u in users] == ["admin", "user", "auditor"]
    assert [u["metadata"]["role"] for u in users] == ["Admin", "User", "Auditor"]
    # the operator adding users to a tenant that already has some is flagged
    assert [u["severity"] for u in users] == ["INFO", "WARNING", "WARNING"]
    assert [u["metadata"]["users_before"] for u in users] == [0, 1, 2]
    assert all(u["session_id"] and u["request_id"] for u in events)

    # an Admin creates a user, an API key, revokes it (twice: recorded once) and rotates the data key
    made = await client.post(
        f"/api/v1/tenants/{t.id}/users",
        json={"username": "dana", "password": f"pw-{secrets.token_hex(8)}", "role": "User"},
        headers=t.admin,
    )
    assert made.status_code == 201, made.text
    key = await client.post("/api/v1/api-keys", json={"name": "ci", "role": "User"}, headers=t.admin)
    assert key.status_code == 201
    for _ in range(2):
        assert (await client.delete(f"/api/v1/api-keys/{key.json()['id']}", headers=t.admin)).status_code == 204
    assert (await client.post(f"/api/v1/tenants/{t.id}/keys/rotate", headers=t.admin)).status_code == 200
    assert (await client.post(f"/api/v1/tenants/{t.id}/keys/rotate", headers=op)).status_code == 200

    events = (await _admin_events(client, t.admin))[4:]
    assert _actions(events) == [
        ("USER_CREATED", admin_id),
        ("API_KEY_CREATED", admin_id),
        ("API_KEY_REVOKED", admin_id),
        ("DATA_KEY_ROTATED", admin_id),
        ("DATA_KEY_ROTATED", operator_id),
    ]
    assert events[0]["severity"] == "INFO" and events[0]["resource_id"] == made.json()["id"]
    assert events[1]["resource_id"] == events[2]["resource_id"] == key.json()["id"]
    assert events[1]["metadata"] == {"name": "ci", "role": "User"}
    assert key.json()["key"] not in str(events)  # never the secret
    assert [e["resource_id"] for e in events[3:]] == ["2", "3"]

    # none of it is in the other tenant's log, and default reads leave it out
    theirs = await _admin_events(client, other.admin)
    assert {e["action"] for e in theirs} == {"TENANT_CREATED", "USER_CREATED"} and len(theirs) == 4
    assert not {e["id"] for e in theirs} & {e["id"] for e in await _admin_events(client, t.admin)}
    default = await client.get("/api/v1/logs", params={"limit": 1000}, headers=t.admin)
    assert not any(e["resource_type"].startswith("auditlog.") for e in default.json()["items"])


async def _rotations(client: ApiClient, tenant: TenantFixture) -> list[dict[str, Any]]:
    return [e for e in await _admin_events(client, tenant.admin) if e["action"] == "DATA_KEY_ROTATED"]


async def test_scheduled_and_cli_rotations_are_recorded_as_the_service(client: ApiClient) -> None:
    runtime = client.app.state.runtime
    a, b = await make_tenant(client), await make_tenant(client)
    ctx: dict[str, Any] = {"db": runtime.db, "keyrings": runtime.keyrings}

    # in the API process: the plugin records through the API's own writer
    in_process = service_events_plugin(runtime.settings, runtime)
    await in_process.startup(ctx)
    try:
        assert await rotate_data_keys(ctx, max_age_days=0) >= 2
    finally:
        await in_process.shutdown(ctx)
    assert in_process.writer.owned is None

    # `auditlog worker` / `auditlog rotate-keys`: the plugin starts and stops a writer of its own
    standalone = service_events_plugin(runtime.settings)
    await standalone.startup(ctx)
    try:
        assert isinstance(standalone, ServiceEventsPlugin) and standalone.writer.owned is not None
        assert await rotate_data_keys(ctx, max_age_days=0, trigger="cli") >= 2
    finally:
        await standalone.shutdown(ctx)

    for tenant in (a, b):
        rotations = await _rotations(client, tenant)
        assert [(e["user_id"], e["metadata"]["trigger"]) for e in rotations] == [
            (SERVICE_ACTOR, "schedule"),
            (SERVICE_ACTOR, "cli"),
        ]
        assert [e["resource_id"] for e in rotations] == ["2", "3"]
    # a tenant rotated recently is not rotated by the weekly schedule, and nothing is recorded for it
    await in_process.startup(ctx)
    try:
        assert await rotate_data_keys(ctx) == 0
    finally:
        await in_process.shutdown(ctx)
    assert len(await _rotations(client, a)) == 2
