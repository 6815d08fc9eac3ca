"""The user lifecycle an Admin expects (issue 15 F4): read, change role, disable/enable, delete, reset a
password, change one's own, unlock; each revoking what it must within a second and recorded in the log."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from app.auth import throttle
from tests.conftest import ApiClient, Database, TenantFixture, login, make_tenant, operator_headers

USERS = "/api/v1/users"
TOKEN = "/api/v1/auth/token"


async def _user_id(client: ApiClient, tenant: TenantFixture, username: str) -> str:
    listed = await client.get(USERS, headers=tenant.admin)
    return str(next(u["id"] for u in listed.json() if u["username"] == username))


async def _still_valid(client: ApiClient, headers: dict[str, str]) -> bool:
    return (await client.get("/api/v1/logs", headers=headers)).status_code != 401


async def _events(database: Database, tenant: TenantFixture) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        rows = await conn.fetch(
            "SELECT action, resource_id, user_id FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'auditlog.user'"
            " ORDER BY seq",
            uuid.UUID(tenant.id),
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def _wait_refused(client: ApiClient, headers: dict[str, str]) -> None:
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        if not await _still_valid(client, headers):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session still works a second later")


async def test_get_patch_role_and_disable_revoke_sessions_and_are_recorded(
    client: ApiClient, database: Database
) -> None:
    t = await make_tenant(client)
    uid = await _user_id(client, t, "user")
    shown = await client.get(f"{USERS}/{uid}", headers=t.admin)
    assert shown.status_code == 200 and shown.json()["role"] == "User" and shown.json()["disabled_at"] is None

    assert await _still_valid(client, t.user)
    promoted = await client.patch(f"{USERS}/{uid}", json={"role": "Auditor"}, headers=t.admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "Auditor"
    await _wait_refused(client, t.user)  # the old role's token is gone
    again = await login(client, t.name, "user", t.passwords["user"])
    assert (
        await client.post("/api/v1/logs", json={"action": "x", "resource_type": "y"}, headers=again)
    ).status_code == 403

    disabled = await client.patch(f"{USERS}/{uid}", json={"disabled": True}, headers=t.admin)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    await _wait_refused(client, again)
    body = {"tenant": t.name, "username": "user", "password": t.passwords["user"]}
    assert (await client.post(TOKEN, json=body)).status_code == 401
    enabled = await client.patch(
        f"{USERS}/{uid}", json={"disabled": False, "email": "new@x.example.com"}, headers=t.admin
    )
    assert enabled.status_code == 200 and enabled.json()["email"] == "n***@x***.com"
    assert (await client.post(TOKEN, json=body)).status_code == 200

    actions = [e["action"] for e in await _events(database, t) if e["resource_id"] == uid]
    assert [a for a in actions if a != "USER_CREATED" and a != "LOGIN_FAILED"] == [
        "ROLE_CHANGED",
        "USER_DISABLED",
        "USER_ENABLED",
        "USER_UPDATED",
    ]


async def test_another_tenants_user_is_404_and_the_operator_names_the_tenant(client: ApiClient) -> None:
    t, other = await make_tenant(client), await make_tenant(client)
    uid = await _user_id(client, other, "user")
    for method, path, body in (
        ("GET", f"{USERS}/{uid}", None),
        ("PATCH", f"{USERS}/{uid}", {"role": "Admin"}),
        ("DELETE", f"{USERS}/{uid}", None),
        ("POST", f"{USERS}/{uid}/unlock", None),
        ("POST", f"{USERS}/{uid}/password", {"new_password": "a-fine-new-password"}),
        ("GET", f"{USERS}/{uid}?tenant_id={other.id}", None),
        ("GET", f"/api/v1/tenants/{other.id}/users", None),
    ):
        response = await client.request(method, path, json=body, headers=t.admin)
        assert response.status_code == 404, (method, path, response.text)
    op = await operator_headers(client)
    assert (await client.get(f"{USERS}/{uid}?tenant_id={other.id}", headers=op)).status_code == 200
    listed = await client.get(f"/api/v1/tenants/{other.id}/users", headers=op)
    assert listed.status_code == 200 and {u["username"] for u in listed.json()} == {"admin", "user", "auditor"}
    assert (await client.get(f"/api/v1/tenants/{t.id}/users", headers=t.admin)).status_code == 200


async def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(client: ApiClient) -> None:
    t = await make_tenant(client)
    admin = await _user_id(client, t, "admin")
    for method, body in (("PATCH", {"role": "User"}), ("PATCH", {"disabled": True}), ("DELETE", None)):
        response = await client.request(method, f"{USERS}/{admin}", json=body, headers=t.admin)
        assert response.status_code == 409, response.text
    uid = await _user_id(client, t, "user")
    assert (await client.patch(f"{USERS}/{uid}", json={"role": "Admin"}, headers=t.admin)).status_code == 200
    assert (await client.patch(f"{USERS}/{admin}", json={"role": "User"}, headers=t.admin)).status_code == 200


async def test_delete_is_soft_hides_the_user_and_revokes_its_sessions(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    uid = await _user_id(client, t, "auditor")
    assert (await client.delete(f"{USERS}/{uid}", headers=t.admin)).status_code == 204
    await _wait_refused(client, t.auditor)
    assert (await client.get(f"{USERS}/{uid}", headers=t.admin)).status_code == 404
    assert "auditor" not in {u["username"] for u in (await client.get(USERS, headers=t.admin)).json()}
    body = {"tenant": t.name, "username": "auditor", "password": t.passwords["auditor"]}
    assert (await client.post(TOKEN, json=body)).status_code == 401
    assert "USER_DELETED" in [e["action"] for e in await _events(database, t) if e["resource_id"] == uid]


async def test_admin_reset_revokes_every_session_and_own_change_keeps_the_current_one(
    client: ApiClient, database: Database
) -> None:
    t = await make_tenant(client)
    uid = await _user_id(client, t, "user")
    second = await login(client, t.name, "user", t.passwords["user"])
    weak = await client.post(f"{USERS}/{uid}/password", json={"new_password": "password123"}, headers=t.admin)
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    reset = await client.post(f"{USERS}/{uid}/password", json={"new_password": "reset-by-the-admin-1"}, headers=t.admin)
    assert reset.status_code == 204
    await _wait_refused(client, t.user)
    await _wait_refused(client, second)
    mine = await login(client, t.name, "user", "reset-by-the-admin-1")
    other = await login(client, t.name, "user", "reset-by-the-admin-1")
    wrong = await client.post(
        f"{USERS}/me/password", json={"current_password": "nope-nope-nope", "new_password": "x" * 5}, headers=mine
    )
    assert wrong.status_code == 403
    changed = await client.post(
        f"{USERS}/me/password",
        json={"current_password": "reset-by-the-admin-1", "new_password": "changed-by-myself-2"},
        headers=mine,
    )
    assert changed.status_code == 204, changed.text
    await _wait_refused(client, other)
    assert await _still_valid(client, mine)
    assert (
        await client.post(TOKEN, json={"tenant": t.name, "username": "user", "password": "changed-by-myself-2"})
    ).status_code == 200
    actions = [e["action"] for e in await _events(database, t) if e["resource_id"] == uid]
    assert "PASSWORD_RESET" in actions and "PASSWORD_CHANGED" in actions
    assert (
        await client.post(
            f"{USERS}/me/password",
            json={"current_password": "a", "new_password": "b"},
            headers=await operator_headers(client),
        )
    ).status_code == 409


async def test_unlock_lets_a_locked_out_address_in_again(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    uid = await _user_id(client, t, "user")
    good = {"tenant": t.name, "username": "user", "password": t.passwords["user"]}
    for i in range(throttle.PAIR_LIMIT):
        await client.post(TOKEN, json={**good, "password": f"wrong-{i}"})
    assert (await client.post(TOKEN, json=good)).status_code == 401
    op = await operator_headers(client)
    assert (await client.post(f"{USERS}/{uid}/unlock?tenant_id={t.id}", headers=op)).status_code == 204
    assert (await client.post(TOKEN, json=good)).status_code == 200
    unlocked = [e for e in await _events(database, t) if e["action"] == "USER_UNLOCKED"]
    assert len(unlocked) == 1 and unlocked[0]["resource_id"] == uid
