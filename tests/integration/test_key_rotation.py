"""Data-key rotation through the route, the scheduled job and across processes: new events use the new key,
old events keep reading."""

from __future__ import annotations

import uuid
from pathlib import Path

from app.runtime import build_runtime
from db.crypto import LocalMasterKey
from db.keyring import KeyringStore
from db.tenancy import TenantDB
from jobs.tasks import rotate_data_keys
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app
from tests.integration.ingest_helpers import raw_row
from tests.integration.test_encryption import _key_id, _post


async def test_admin_rotates_the_tenant_key_and_old_events_still_read(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    before = await _post(client, t.user, "old-key")
    rotated = await client.post(f"/api/v1/tenants/{t.id}/keys/rotate", headers=t.admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json() == {"tenant_id": t.id, "key_id": 2}
    after = await _post(client, t.user, "new-key")

    old_row, new_row = await raw_row(database, str(before["id"])), await raw_row(database, str(after["id"]))
    assert old_row is not None and new_row is not None
    assert _key_id(bytes(old_row["payload"])) == 1
    assert _key_id(bytes(new_row["payload"])) == 2
    for event, marker in ((before, "old-key"), (after, "new-key")):
        got = await client.get(f"/api/v1/logs/{event['id']}", headers=t.auditor)
        assert got.status_code == 200 and got.json()["metadata"]["marker"] == marker

    other = await make_tenant(client)
    assert (await client.post(f"/api/v1/tenants/{t.id}/keys/rotate", headers=other.admin)).status_code == 404
    assert (await client.post(f"/api/v1/tenants/{t.id}/keys/rotate", headers=t.user)).status_code == 403


async def test_rotation_job_rotates_only_stale_keys(client: ApiClient, settings: object) -> None:
    t = await make_tenant(client)
    runtime = client.app.state.runtime
    ctx = {"db": runtime.db, "keyrings": runtime.keyrings}
    assert await rotate_data_keys(ctx, max_age_days=7) == 0  # fresh keys are left alone
    rotated = await rotate_data_keys(ctx, max_age_days=0)
    assert rotated >= 2  # the platform tenant and t (and any other) all got a new key
    async with runtime.db.tenant(uuid.UUID(t.id)) as session:
        runtime.keyrings.forget(uuid.UUID(t.id))
        ring = await runtime.keyrings.get(session, uuid.UUID(t.id))
    assert ring.active.key_id == 2 and set(ring.keys) == {1, 2}


async def test_a_rotation_made_elsewhere_reaches_this_process(
    client: ApiClient, database: Database, tmp_path: Path
) -> None:
    client.app.state.runtime.keyrings.cache_seconds = 0.0  # this process re-reads keys on every use
    t = await make_tenant(client)
    await _post(client, t.user, "warm-the-cache")
    other = await build_runtime(make_settings(database, tmp_path / "other"))
    try:  # another process (its own runtime) rotates
        async with other.db.tenant(uuid.UUID(t.id)) as session:
            assert await other.keyrings.rotate(session, uuid.UUID(t.id)) == 2
    finally:
        await other.close()
    after = await _post(client, t.user, "after-remote-rotation")
    row = await raw_row(database, str(after["id"]))
    assert row is not None and _key_id(bytes(row["payload"])) == 2


async def test_rotate_keys_uses_the_master_key_of_the_settings(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    async with running_app(settings) as client:
        t = await make_tenant(client)
    runtime = await build_runtime(settings)
    try:
        keyrings = KeyringStore(LocalMasterKey.from_setting(settings.master_key or ""))
        ctx = {"db": TenantDB(runtime.engine), "keyrings": keyrings}
        assert await rotate_data_keys(ctx, max_age_days=0) >= 1
        async with runtime.db.tenant(uuid.UUID(t.id)) as session:
            assert (await runtime.keyrings.get(session, uuid.UUID(t.id))).active.key_id == 2
    finally:
        await runtime.close()
