"""The verifiable log with the real job worker: events reach a signed checkpoint within about a second, a
rotated signing key keeps old checkpoints verifiable, and destroying a data key (crypto-shredding) keeps
every proof and the offline verification valid."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.verifiable import merkle
from app.verifiable.integrator import integrate_tenant
from app.verifiable.keys import checkpoint_keys
from app.verifiable.note import NoteSigner, generate_signer_key, open_checkpoint
from app.verifiable.verify import parse_verifier_keys, verify_export
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app

pytestmark = pytest.mark.timeout(180)


def merkle_b64(value: str) -> bytes:
    return base64.b64decode(value)


async def _latest(client: ApiClient, headers: dict[str, str]) -> dict[str, Any] | None:
    r = await client.get("/api/v1/checkpoints/latest", headers=headers)
    return r.json() if r.status_code == 200 else None


async def test_the_worker_integrates_within_a_second_and_rotation_keeps_old_checkpoints(
    database: Database, tmp_path: Path
) -> None:
    old_key = make_settings(database, tmp_path).checkpoint_signing_keys
    assert old_key
    settings = make_settings(database, tmp_path, run_worker_in_process=True, checkpoint_interval_seconds=0.2)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        delays = []
        for round_ in range(3):
            posted = await client.post(
                "/api/v1/logs", json={"action": "CREATE", "resource_type": "doc", "resource_id": str(round_)},
                headers=t.admin,
            )  # fmt: skip
            assert posted.status_code == 201, posted.text
            start = time.monotonic()
            event_id = posted.json()["id"]
            while True:
                r = await client.get(f"/api/v1/logs/{event_id}/proof", headers=t.auditor)
                if r.status_code == 200:
                    break
                assert time.monotonic() - start < 5.0, "not in a signed checkpoint within 5 s"
                await asyncio.sleep(0.05)
            delays.append(time.monotonic() - start)
            proof = r.json()
            verifiers = parse_verifier_keys((await client.get("/.well-known/auditlog/checkpoint-key")).text)
            cp = open_checkpoint(proof["checkpoint"], verifiers, origin=f"auditlog.example/{t.id}")
            merkle.verify_inclusion(
                proof["leaf_index"], cp.tree_size, merkle_b64(proof["leaf_hash"]),
                [merkle_b64(h) for h in proof["hashes"]], cp.root_hash,
            )  # fmt: skip
        assert max(delays) < 2.0, delays
        before = await _latest(client, t.admin)
        assert before is not None

    new_key = generate_signer_key("auditlog.example")
    rotated = make_settings(
        database, tmp_path, run_worker_in_process=True, checkpoint_interval_seconds=0.2,
        checkpoint_signing_keys=f"{new_key},{old_key}",
    )  # fmt: skip
    async with running_app(rotated) as client:
        published = (await client.get("/.well-known/auditlog/checkpoint-key")).text.splitlines()
        assert published == [NoteSigner.parse(new_key).verifier.text(), NoteSigner.parse(old_key).verifier.text()]
        verifiers = parse_verifier_keys("\n".join(published))
        open_checkpoint(before["checkpoint"], verifiers)  # signed by the old key, still verifies
        with pytest.raises(Exception, match="no signature"):
            open_checkpoint(before["checkpoint"], verifiers[:1])
        await client.post("/api/v1/logs", json={"action": "CREATE", "resource_type": "doc"}, headers=t.admin)
        deadline = time.monotonic() + 10
        while (latest := await _latest(client, t.admin)) is None or latest["tree_size"] <= before["tree_size"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        open_checkpoint(latest["checkpoint"], verifiers[:1])  # new checkpoints: the new key
        body = await client.get(
            "/api/v1/checkpoints/consistency", params={"from": before["tree_size"], "to": latest["tree_size"]},
            headers=t.user,
        )  # fmt: skip
        merkle.verify_consistency(
            before["tree_size"], latest["tree_size"], [merkle_b64(h) for h in body.json()["hashes"]],
            merkle_b64(before["root_hash"]), merkle_b64(latest["root_hash"]),
        )  # fmt: skip


async def test_destroying_a_data_key_keeps_proofs_and_the_export_verifiable(
    client: ApiClient, database: Database
) -> None:
    t = await make_tenant(client)
    tid = uuid.UUID(t.id)
    runtime = client.app.state.runtime
    for i in range(5):
        r = await client.post(
            "/api/v1/logs",
            json={"action": "CREATE", "resource_type": "doc", "metadata": {"secret": i}},
            headers=t.admin,
        )
        assert r.status_code == 201
    await integrate_tenant(runtime.db, tid, checkpoint_keys(runtime.settings))
    async with runtime.db.tenant(tid) as session:
        await runtime.keyrings.rotate(session, tid)
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:  # crypto-shredding: the first data key is gone for good
        await conn.execute("DELETE FROM tenant_keys WHERE tenant_id = $1 AND key_id = 1", tid)
    finally:
        await conn.close()
    runtime.keyrings._cache.clear()
    r = await client.get("/api/v1/logs/export", params={"format": "ndjson", "proofs": "true"}, headers=t.auditor)
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    unreadable = [line for line in lines if '"payload_unreadable":true' in line]
    assert len(unreadable) >= 5
    verifiers = parse_verifier_keys((await client.get("/.well-known/auditlog/checkpoint-key")).text)
    report = verify_export(lines, verifiers, origin=f"auditlog.example/{t.id}")
    assert report.ok, report.failures
