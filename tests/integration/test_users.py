"""Users of a tenant: creation by operator and Admin, masked emails, the vault, duplicates, scoping."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from db.repository import UnboundSession, UserRepository
from tests.conftest import ApiClient, Database, make_tenant, operator_headers


async def test_users_are_created_with_masked_email_and_listed_per_tenant(client: ApiClient, database: Database) -> None:
    t, other = await make_tenant(client), await make_tenant(client)
    made = await client.post(
        f"/api/v1/tenants/{t.id}/users",
        json={
            "username": "Carol",
            "password": "carol-password-1",
            "role": "User",
            "email": "carol.jones@corp.example.com",
        },
        headers=t.admin,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["email"] == "c***@c***.com" and body["role"] == "User" and body["username"] == "Carol"

    dup = await client.post(
        f"/api/v1/tenants/{t.id}/users",
        json={"username": "carol", "password": "another-password", "role": "Auditor"},
        headers=await operator_headers(client),
    )
    assert dup.status_code == 409

    listed = await client.get("/api/v1/users", headers=t.admin)
    assert listed.status_code == 200
    names = {u["username"] for u in listed.json()}
    assert names == {"admin", "user", "auditor", "Carol"}
    assert all("@" not in (u["email"] or "@x") or "***" in u["email"] for u in listed.json())
    assert "Carol" not in {u["username"] for u in (await client.get("/api/v1/users", headers=other.admin)).json()}

    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        stored = await conn.fetchrow("SELECT email FROM users WHERE id = $1", uuid.UUID(body["id"]))
        vault = await conn.fetchrow(
            "SELECT value, encrypted FROM mask_users WHERE user_id = $1 AND field = 'email'", uuid.UUID(body["id"])
        )
    finally:
        await conn.close()
    assert stored["email"] == "c***@c***.com"
    assert vault["encrypted"] is True and b"carol.jones" not in bytes(vault["value"])


async def test_an_admin_cannot_create_users_in_another_tenant(client: ApiClient) -> None:
    t, other = await make_tenant(client), await make_tenant(client)
    response = await client.post(
        f"/api/v1/tenants/{other.id}/users",
        json={"username": "mole", "password": "mole-password-1", "role": "Admin"},
        headers=t.admin,
    )
    assert response.status_code == 404


async def test_tenant_repository_refuses_a_session_without_a_tenant(client: ApiClient) -> None:
    async with client.app.state.runtime.db.system() as session:
        with pytest.raises(UnboundSession):
            UserRepository(session=session)


async def test_a_common_or_short_password_is_422_naming_the_field(client: ApiClient) -> None:
    t = await make_tenant(client)
    for password in ("password", "Password2024!", "short-pw"):
        response = await client.post(
            f"/api/v1/tenants/{t.id}/users",
            json={"username": "weak", "password": password, "role": "User"},
            headers=t.admin,
        )
        assert response.status_code == 422, (password, response.text)
        assert response.json()["errors"][0]["field"] == "password"


async def test_a_tenant_name_that_parses_as_a_uuid_is_422(client: ApiClient) -> None:
    op = await operator_headers(client)
    other = await make_tenant(client)
    for name in (other.id, other.id.replace("-", "").upper(), "{" + str(uuid.uuid4()) + "}"):
        response = await client.post("/api/v1/tenants", json={"name": name}, headers=op)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["errors"][0]["field"] == "name"
    assert (await client.post("/api/v1/tenants", json={"name": "acme-uuid-like-not"}, headers=op)).status_code == 201
