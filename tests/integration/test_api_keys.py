"""API keys: created by an Admin, shown once, stored hashed, usable two ways, role-bound, revocable."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.auth.tokens import hash_secret
from tests.conftest import ApiClient, Database, make_tenant

KEYS = "/api/v1/api-keys"


async def _create(client: ApiClient, headers: dict[str, str], role: str, name: str = "ci") -> dict[str, Any]:
    response = await client.post(KEYS, json={"name": name, "role": role}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _owner_fetch(database: Database, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_create_use_list_and_store_only_a_hash(client: ApiClient, database: Database) -> None:
    tenant = await make_tenant(client)
    created = await _create(client, tenant.admin, "User")
    assert {"id", "name", "role", "key", "created_at"} <= created.keys()
    assert created["role"] == "User" and created["key"].startswith("alk_")
    key = created["key"]

    rows = await _owner_fetch(database, "SELECT * FROM api_keys WHERE id = $1", uuid.UUID(created["id"]))
    assert len(rows) == 1
    stored = rows[0]
    assert bytes(stored["key_hash"]) == hash_secret(key)
    for column, value in dict(stored).items():
        assert key not in str(value), f"plaintext key in column {column}"
        assert key.rsplit("_", 1)[1] not in str(value), f"secret part in column {column}"

    # A User key may create logs only if the logs route exists; both ways of sending it authenticate it.
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        assert (await client.get("/api/v1/users", headers=headers)).status_code == 403  # User: not Admin
        assert (await client.get("/api/v1/tenants", headers=headers)).status_code == 403
    bad = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert (await client.get("/api/v1/users", headers={"X-API-Key": bad})).status_code == 401

    listed = await client.get(KEYS, headers=tenant.admin)
    assert listed.status_code == 200
    (item,) = [k for k in listed.json() if k["id"] == created["id"]]
    assert "key" not in item and item["revoked_at"] is None

    # last_used_at is written by the background flush (forced here instead of waiting for its tick; on a
    # loaded machine the tick may have written it first, so the row is what is checked, not the count).
    await client.app.state.runtime.services["api_key_usage"].flush()
    rows = await _owner_fetch(database, "SELECT last_used_at FROM api_keys WHERE id = $1", uuid.UUID(created["id"]))
    assert rows[0]["last_used_at"] is not None


async def test_role_of_the_key_is_enforced(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    auditor = (await _create(client, tenant.admin, "Auditor"))["key"]
    user = (await _create(client, tenant.admin, "User"))["key"]
    paths = {route.path for route in client.app.routes}
    if "/api/v1/logs" in paths:
        event = {"action": "CREATE", "resource_type": "doc"}
        denied = await client.post("/api/v1/logs", json=event, headers={"X-API-Key": auditor})
        assert denied.status_code == 403
        allowed = await client.post("/api/v1/logs", json=event, headers={"X-API-Key": user})
        assert allowed.status_code == 201, allowed.text
    assert (await client.get("/api/v1/users", headers={"X-API-Key": auditor})).status_code == 403
    assert (await client.post(KEYS, json={"name": "x", "role": "User"}, headers={"X-API-Key": user})).status_code == 403
    # Keys cannot be made Admin, and the body is checked strictly.
    assert (await client.post(KEYS, json={"name": "x", "role": "Admin"}, headers=tenant.admin)).status_code == 422
    extra = {"name": "x", "role": "User", "tenant_id": str(uuid.uuid4())}
    assert (await client.post(KEYS, json=extra, headers=tenant.admin)).status_code == 422
    # Only Admins manage keys.
    assert (await client.post(KEYS, json={"name": "x", "role": "User"}, headers=tenant.user)).status_code == 403
    assert (await client.get(KEYS, headers=tenant.auditor)).status_code == 403


async def test_revoked_key_stops_working_within_a_second(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    created = await _create(client, tenant.admin, "User")
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/api/v1/tenants", headers=headers)).status_code == 403  # authenticated
    assert (await client.delete(f"{KEYS}/{created['id']}", headers=tenant.admin)).status_code == 204
    started = time.monotonic()
    status = 403
    while time.monotonic() - started < 1.0:
        status = (await client.get("/api/v1/tenants", headers=headers)).status_code
        if status == 401:
            break
        await asyncio.sleep(0.05)
    assert status == 401
    # Revoking again is harmless; an unknown id is 404.
    assert (await client.delete(f"{KEYS}/{created['id']}", headers=tenant.admin)).status_code == 204
    assert (await client.delete(f"{KEYS}/{uuid.uuid4()}", headers=tenant.admin)).status_code == 404
    listed = (await client.get(KEYS, headers=tenant.admin)).json()
    assert [k["revoked_at"] is not None for k in listed if k["id"] == created["id"]] == [True]


async def test_revocation_reaches_a_process_that_cached_the_key(client: ApiClient, database: Database) -> None:
    """The key is cached after its first use; the NOTIFY (not a cache expiry) must stop it."""
    from tests.conftest import make_settings, running_app

    tenant = await make_tenant(client)
    created = await _create(client, tenant.admin, "Auditor")
    headers = {"X-API-Key": created["key"]}
    settings = client.app.state.runtime.settings
    async with running_app(make_settings(database, settings.data_dir / "other")) as other:
        assert (await other.get("/api/v1/users", headers=headers)).status_code == 403  # cached there now
        assert (await client.delete(f"{KEYS}/{created['id']}", headers=tenant.admin)).status_code == 204
        started = time.monotonic()
        status = 403
        while time.monotonic() - started < 1.0:
            status = (await other.get("/api/v1/users", headers=headers)).status_code
            if status == 401:
                break
            await asyncio.sleep(0.05)
        assert status == 401


async def test_another_tenants_key_is_not_found(client: ApiClient) -> None:
    a = await make_tenant(client)
    b = await make_tenant(client)
    b_key = await _create(client, b.admin, "User")
    response = await client.delete(f"{KEYS}/{b_key['id']}", headers=a.admin)
    assert response.status_code == 404
    assert all(k["id"] != b_key["id"] for k in (await client.get(KEYS, headers=a.admin)).json())
    # B's key still works, and acts inside B only.
    assert (await client.get("/api/v1/users", headers={"X-API-Key": b_key["key"]})).status_code == 403
    b_listed = (await client.get(KEYS, headers=b.admin)).json()
    assert [k["revoked_at"] for k in b_listed if k["id"] == b_key["id"]] == [None]


async def test_background_flush_records_last_use(client: ApiClient, database: Database) -> None:
    from app.api_keys.service import KeyUsageFlusher

    tenant = await make_tenant(client)
    created = await _create(client, tenant.admin, "Auditor")
    assert (await client.get("/api/v1/users", headers={"X-API-Key": created["key"]})).status_code == 403
    flusher = KeyUsageFlusher(client.app.state.runtime, interval=0.1).start()
    try:
        last_used = None
        for _ in range(20):
            await asyncio.sleep(0.1)
            rows = await _owner_fetch(
                database, "SELECT last_used_at FROM api_keys WHERE id = $1", uuid.UUID(created["id"])
            )
            last_used = rows[0]["last_used_at"]
            if last_used is not None:
                break
        assert last_used is not None
    finally:
        await flusher.stop()


async def test_a_revoked_key_stays_refused_across_cache_expiry_and_revocation_horizon(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 F2: with a short token TTL the registry forgot revocations before the key cache expired, and
    the revoked key worked again. Short cache and horizon here, so one full cycle takes a few seconds."""
    from app.api_keys.service import KeyUsageFlusher
    from app.auth import authenticator, revocation
    from tests.conftest import make_settings, running_app

    monkeypatch.setattr(authenticator, "API_KEY_CACHE_SECONDS", 1.0)
    monkeypatch.setattr(revocation, "JWT_LEEWAY_SECONDS", 0)
    monkeypatch.setattr(revocation, "MARGIN_SECONDS", 0.5)
    monkeypatch.setattr(revocation, "POLL_SECONDS", 0.2)
    async with running_app(make_settings(database, tmp_path, access_token_ttl_seconds=1)) as client:
        runtime = client.app.state.runtime
        tenant = await make_tenant(client)
        created = await _create(client, tenant.admin, "User")
        key_id = uuid.UUID(created["id"])
        headers = {"X-API-Key": created["key"]}
        assert (await client.get("/api/v1/tenants", headers=headers)).status_code == 403  # accepted, cached
        assert (await client.delete(f"{KEYS}/{created['id']}", headers=tenant.admin)).status_code == 204
        assert (await client.get("/api/v1/tenants", headers=headers)).status_code == 401

        statuses: list[int] = []
        forgotten_at = None
        started = time.monotonic()
        while time.monotonic() - started < 10:
            statuses.append((await client.get("/api/v1/tenants", headers=headers)).status_code)
            if forgotten_at is None and not runtime.revocations.is_revoked(key_id):
                forgotten_at = time.monotonic()
            if forgotten_at is not None and time.monotonic() - forgotten_at > 1.5:  # past a cache expiry too
                break
            await asyncio.sleep(0.1)
        assert forgotten_at is not None, "the registry never forgot the revocation: the cycle was not exercised"
        assert set(statuses) == {401}, statuses

        await KeyUsageFlusher(runtime).flush()
        (row,) = await _owner_fetch(database, "SELECT last_used_at, revoked_at FROM api_keys WHERE id = $1", key_id)
        assert row["revoked_at"] is not None
        assert row["last_used_at"] is None or row["last_used_at"] <= row["revoked_at"]


async def test_unknown_keys_are_remembered_briefly_instead_of_queried_each_time(client: ApiClient) -> None:
    from app.auth.tokens import new_api_key

    runtime = client.app.state.runtime
    calls = 0
    load = runtime.authenticator._load_key

    async def counting(public_id: str, now: float) -> Any:
        nonlocal calls
        calls += 1
        return await load(public_id, now)

    runtime.authenticator._load_key = counting
    key, _, _ = new_api_key()
    for _ in range(5):
        assert (await client.get("/api/v1/users", headers={"X-API-Key": key})).status_code == 401
    assert calls == 1
