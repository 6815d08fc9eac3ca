"""Encryption at rest of event payloads: AAD binding to tenant and event, and key rotation, via the API."""

from __future__ import annotations

import struct
import uuid

import pytest

from db.crypto import DecryptionError
from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.ingest_helpers import decrypt, owner, raw_row

SECRET_META = {"plan": "enterprise-gold", "region": "eu-west-7"}


async def _post(client: ApiClient, headers: dict[str, str], marker: str) -> dict[str, object]:
    response = await client.post(
        "/api/v1/logs",
        json={
            "action": "UPDATE",
            "resource_type": "account",
            "metadata": {**SECRET_META, "marker": marker},
            "before_state": {"marker": marker},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _key_id(blob: bytes) -> int:
    return int(struct.unpack_from(">I", blob, 1)[0])


async def test_payload_is_ciphertext_bound_to_the_event(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    event = await _post(client, t.user, "m-1")
    row = await raw_row(database, str(event["id"]))
    assert row is not None
    blob = bytes(row["payload"])
    assert b"enterprise-gold" not in blob and b"m-1" not in blob
    assert (await decrypt(client, t.id, blob, event["id"], "payload"))["metadata"]["marker"] == "m-1"
    with pytest.raises(DecryptionError):  # another event id, another field: the AAD does not match
        await decrypt(client, t.id, blob, uuid.uuid4(), "payload")
    with pytest.raises(DecryptionError):
        await decrypt(client, t.id, blob, event["id"], "pii")


@pytest.mark.parametrize("across_tenants", [False, True])
async def test_swapped_ciphertext_never_decrypts(client: ApiClient, database: Database, across_tenants: bool) -> None:
    t = await make_tenant(client)
    u = await make_tenant(client) if across_tenants else t
    victim = await _post(client, t.user, "victim-data")
    donor = await _post(client, u.user, "donor-data")
    conn = await owner(database)
    try:  # the owner may do what the API role cannot: move one row's ciphertext onto another row
        await conn.execute(
            "UPDATE audit_logs SET payload = (SELECT payload FROM audit_logs WHERE id = $2) WHERE id = $1",
            uuid.UUID(str(victim["id"])),
            uuid.UUID(str(donor["id"])),
        )
    finally:
        await conn.close()
    read = await client.get(f"/api/v1/logs/{victim['id']}", headers=t.auditor)
    assert read.status_code >= 500, read.text
    assert "donor-data" not in read.text and "enterprise-gold" not in read.text
    assert read.headers["content-type"].startswith("application/problem+json")
    listed = await client.get("/api/v1/logs", headers=t.auditor)
    assert "donor-data" not in listed.text
    row = await raw_row(database, str(victim["id"]))
    assert row is not None
    with pytest.raises(DecryptionError):
        await decrypt(client, t.id, row["payload"], victim["id"], "payload")


async def test_key_rotation_new_writes_new_key_old_still_readable(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    runtime = client.app.state.runtime
    before = await _post(client, t.user, "before-rotation")
    tid = uuid.UUID(t.id)
    async with runtime.db.tenant(tid) as session:
        new_key = await runtime.keyrings.rotate(session, tid)
    assert new_key == 2
    after = await _post(client, t.user, "after-rotation")
    old_row, new_row = await raw_row(database, str(before["id"])), await raw_row(database, str(after["id"]))
    assert old_row is not None and new_row is not None
    assert _key_id(bytes(old_row["payload"])) == 1 and _key_id(bytes(new_row["payload"])) == 2

    for event, marker in ((before, "before-rotation"), (after, "after-rotation")):
        read = await client.get(f"/api/v1/logs/{event['id']}", headers=t.auditor)
        assert read.status_code == 200, read.text
        assert read.json()["metadata"]["marker"] == marker
        assert read.json() == event

    # A fresh process (cold keyring cache) reads both too.
    runtime.keyrings.forget(tid)
    for event in (before, after):
        assert (await client.get(f"/api/v1/logs/{event['id']}", headers=t.auditor)).status_code == 200
