"""The verifiable log end to end: events integrated into the tenant's tree (tiles in PostgreSQL), signed
checkpoints, the proof routes, the export with proofs and ``auditlog verify``, and what tampering each detects."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.cli import main as cli_main
from app.verifiable import merkle
from app.verifiable.integrator import integrate_tenant
from app.verifiable.keys import checkpoint_keys
from app.verifiable.note import NoteError, NoteSigner, generate_signer_key, open_checkpoint
from app.verifiable.service import integrate
from app.verifiable.verify import parse_verifier_keys, verify_export
from db.leaf import LeafFields, leaf_hash
from tests.conftest import ApiClient, Database, TenantFixture, make_tenant

pytestmark = pytest.mark.timeout(180)


# The reference leaf (``LeafFields`` from the stored row, datetimes and all): independent of the integrator's
# fast path, so every check below also holds the two encodings equal.
LEAF_COLUMNS = (
    'seq, id, "timestamp", received_at, action, resource_type, resource_id, user_id, session_id, request_id,'
    " severity, host(ip_address), user_agent, message, payload"
)


def leaf_of_row(tenant_id: uuid.UUID, row: Any) -> LeafFields:
    return LeafFields(tenant_id, *row)


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


async def _post(client: ApiClient, t: TenantFixture, n: int, tag: str = "doc") -> list[str]:
    events = [
        {
            "action": "UPDATE" if i % 2 else "CREATE",
            "resource_type": tag,
            "resource_id": f"{tag}-{i}",
            "user_id": f"u{i % 3}",
            "ip_address": "10.1.2.3" if i % 2 else "2001:db8::7",
            "message": f"event {i}",
            "metadata": {"i": i, "note": "x" * (i % 5)},
        }
        for i in range(n)
    ]
    response = await client.post("/api/v1/logs/bulk", json=events, headers=t.admin)
    assert response.status_code == 201, response.text
    return [str(i) for i in response.json()["ids"]]


async def _integrate(client: ApiClient, t: TenantFixture) -> int:
    runtime = client.app.state.runtime
    done = await integrate_tenant(runtime.db, uuid.UUID(t.id), checkpoint_keys(runtime.settings))
    return done.new_size


async def _owner(database: Database) -> asyncpg.Connection:
    return await asyncpg.connect(database.dsn(database.owner_url))


async def _stored_leaves(database: Database, tenant_id: str) -> dict[int, bytes]:
    """seq → leaf hash recomputed from the rows as stored now (an auditor with database access)."""
    conn = await _owner(database)
    try:
        rows = await conn.fetch(f"SELECT {LEAF_COLUMNS} FROM audit_logs WHERE tenant_id = $1", uuid.UUID(tenant_id))
    finally:
        await conn.close()
    return {int(r[0]): leaf_hash(leaf_of_row(uuid.UUID(tenant_id), r)) for r in rows}


@pytest.fixture
async def tenant(client: ApiClient) -> AsyncIterator[TenantFixture]:
    yield await make_tenant(client)


async def _keys_text(client: ApiClient) -> str:
    response = await client.get("/.well-known/auditlog/checkpoint-key")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_checkpoint_proofs_and_consistency(client: ApiClient, tenant: TenantFixture) -> None:
    verifiers = parse_verifier_keys(await _keys_text(client))
    assert len(verifiers) == 1 and verifiers[0].name == "auditlog.example"
    assert (await client.get("/api/v1/checkpoints/latest", headers=tenant.auditor)).status_code in (200, 404)
    ids = await _post(client, tenant, 40)
    size1 = await _integrate(client, tenant)
    assert size1 >= 40
    first = (await client.get("/api/v1/checkpoints/latest", headers=tenant.user)).json()
    cp1 = open_checkpoint(first["checkpoint"], verifiers, origin=f"auditlog.example/{tenant.id}")
    assert (
        cp1.tree_size == first["tree_size"] == size1 and base64.b64encode(cp1.root_hash).decode() == first["root_hash"]
    )

    for event_id in ids[:5] + ids[-3:]:
        proof = (await client.get(f"/api/v1/logs/{event_id}/proof", headers=tenant.auditor)).json()
        assert proof["tree_size"] == size1 and proof["checkpoint"] == first["checkpoint"]
        merkle.verify_inclusion(
            proof["leaf_index"], size1, _b64(proof["leaf_hash"]), [_b64(h) for h in proof["hashes"]], cp1.root_hash
        )

    ids2 = await _post(client, tenant, 300)  # crosses a full 256-leaf tile
    size2 = await _integrate(client, tenant)
    second = (await client.get("/api/v1/checkpoints/latest", headers=tenant.admin)).json()
    cp2 = open_checkpoint(second["checkpoint"], verifiers, origin=f"auditlog.example/{tenant.id}")
    assert cp2.tree_size == size2 > size1
    r = await client.get("/api/v1/checkpoints/consistency", params={"from": size1, "to": size2}, headers=tenant.user)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == size1 and body["to"] == size2
    merkle.verify_consistency(size1, size2, [_b64(h) for h in body["hashes"]], cp1.root_hash, cp2.root_hash)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(size1, size2, [_b64(h) for h in body["hashes"]], cp1.root_hash[::-1], cp2.root_hash)

    # a proof against the older checkpoint still verifies, by its tree size
    old = (await client.get(f"/api/v1/logs/{ids[0]}/proof", params={"tree_size": size1}, headers=tenant.user)).json()
    merkle.verify_inclusion(
        old["leaf_index"], size1, _b64(old["leaf_hash"]), [_b64(h) for h in old["hashes"]], cp1.root_hash
    )
    new = (await client.get(f"/api/v1/logs/{ids2[-1]}/proof", headers=tenant.user)).json()
    merkle.verify_inclusion(
        new["leaf_index"], size2, _b64(new["leaf_hash"]), [_b64(h) for h in new["hashes"]], cp2.root_hash
    )


async def test_route_errors(client: ApiClient, tenant: TenantFixture) -> None:
    ids = await _post(client, tenant, 3)
    h = tenant.user
    assert (await client.get(f"/api/v1/logs/{ids[0]}/proof", headers=h)).status_code == 404  # not integrated
    size = await _integrate(client, tenant)
    assert (await client.get(f"/api/v1/logs/{uuid.uuid4()}/proof", headers=h)).status_code == 404
    r = await client.get(f"/api/v1/logs/{ids[-1]}/proof", params={"tree_size": 1}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tree_size"
    assert (await client.get(f"/api/v1/logs/{ids[0]}/proof", params={"tree_size": "x"}, headers=h)).status_code == 422
    r = await client.get(f"/api/v1/logs/{ids[0]}/proof", params={"tree_size": size + 5}, headers=h)
    assert r.status_code == 404
    bad_params: list[dict[str, Any]] = [
        {"from": 2, "to": 1},
        {"from": 0, "to": 1},
        {"from": 1, "to": size + 1},
        {"to": 1},
        {"from": "a", "to": 2},
    ]
    for params in bad_params:
        r = await client.get("/api/v1/checkpoints/consistency", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
    assert (await client.get("/api/v1/checkpoints/latest")).status_code == 401
    # another tenant sees its own (empty) tree, never this one's
    other = await make_tenant(client)
    assert (await client.get(f"/api/v1/logs/{ids[0]}/proof", headers=other.admin)).status_code == 404
    r = await client.get("/api/v1/checkpoints/consistency", params={"from": 1, "to": size}, headers=other.admin)
    assert r.status_code == 422


async def test_other_key_and_other_tenant_checkpoints_are_refused(client: ApiClient, tenant: TenantFixture) -> None:
    other = await make_tenant(client)
    await _post(client, tenant, 2)
    await _post(client, other, 2)
    await _integrate(client, tenant)
    await _integrate(client, other)
    verifiers = parse_verifier_keys(await _keys_text(client))
    mine = (await client.get("/api/v1/checkpoints/latest", headers=tenant.admin)).json()["checkpoint"]
    theirs = (await client.get("/api/v1/checkpoints/latest", headers=other.admin)).json()["checkpoint"]
    open_checkpoint(mine, verifiers, origin=f"auditlog.example/{tenant.id}")
    with pytest.raises(NoteError, match="not 'auditlog"):
        open_checkpoint(theirs, verifiers, origin=f"auditlog.example/{tenant.id}")
    forged = NoteSigner.parse(generate_signer_key("auditlog.example")).sign(mine.partition("\n\n")[0] + "\n")
    with pytest.raises(NoteError, match="no signature"):
        open_checkpoint(forged, verifiers)


async def test_tampering_with_stored_events_is_detected_by_the_servers_proofs(
    client: ApiClient, tenant: TenantFixture, database: Database
) -> None:
    ids = await _post(client, tenant, 12)
    size = await _integrate(client, tenant)
    latest = (await client.get("/api/v1/checkpoints/latest", headers=tenant.admin)).json()
    root = _b64(latest["root_hash"])
    tid = uuid.UUID(tenant.id)

    async def failing() -> set[int]:
        """Positions 1..size whose stored event no longer matches the server's proof, or has no event."""
        stored = await _stored_leaves(database, tenant.id)
        bad: set[int] = set()
        for seq in range(1, size + 1):
            leaf = stored.get(seq)
            if leaf is None:
                bad.add(seq)
                continue
            runtime = client.app.state.runtime
            async with runtime.db.read(tid) as pg:
                from app.verifiable.service import inclusion

                _, path = await inclusion(pg, tid, seq - 1, size)
            try:
                merkle.verify_inclusion(seq - 1, size, leaf, path, root)
            except merkle.ProofError:
                bad.add(seq)
        return bad

    assert await failing() == set()
    conn = await _owner(database)
    try:
        seq_of = {
            str(r[0]): int(r[1]) for r in await conn.fetch("SELECT id, seq FROM audit_logs WHERE tenant_id = $1", tid)
        }
        target = seq_of[ids[3]]
        for column, value in (("action", "'DELETE'"), ("message", "'edited'"), ("ip_address", "'10.9.9.9'"),
                              ("timestamp", "\"timestamp\" + interval '1 microsecond'"),
                              ("payload", "overlay(payload placing '\\x00'::bytea from 30 for 1)")):  # fmt: skip
            saved = await conn.fetchrow(
                f'SELECT "{column}" AS v FROM audit_logs WHERE tenant_id = $1 AND seq = $2', tid, target
            )
            await conn.execute(
                f'UPDATE audit_logs SET "{column}" = {value} WHERE tenant_id = $1 AND seq = $2', tid, target
            )
            assert await failing() == {target}, column
            await conn.execute(
                f'UPDATE audit_logs SET "{column}" = $3 WHERE tenant_id = $1 AND seq = $2', tid, target, saved["v"]
            )
            assert await failing() == set(), column
        # reorder two events: swap their positions
        a, b = seq_of[ids[1]], seq_of[ids[2]]
        await conn.execute("UPDATE audit_logs SET seq = -1 WHERE tenant_id = $1 AND seq = $2", tid, a)
        await conn.execute("UPDATE audit_logs SET seq = $2 WHERE tenant_id = $1 AND seq = $3", tid, a, b)
        await conn.execute("UPDATE audit_logs SET seq = $2 WHERE tenant_id = $1 AND seq = -1", tid, b)
        assert await failing() == {a, b}
        await conn.execute("UPDATE audit_logs SET seq = -1 WHERE tenant_id = $1 AND seq = $2", tid, a)
        await conn.execute("UPDATE audit_logs SET seq = $2 WHERE tenant_id = $1 AND seq = $3", tid, a, b)
        await conn.execute("UPDATE audit_logs SET seq = $2 WHERE tenant_id = $1 AND seq = -1", tid, b)
        assert await failing() == set()
        # insert one at an existing position (a forged event): that position no longer matches
        row = await conn.fetchrow("SELECT * FROM audit_logs WHERE tenant_id = $1 AND seq = $2", tid, target)
        forged = dict(row)
        forged.update(id=uuid.uuid4(), message="forged")
        forged.pop("search", None)
        cols = list(forged)
        await conn.execute(
            f"INSERT INTO audit_logs ({', '.join(f'{c!r}'.replace(chr(39), chr(34)) for c in cols)})"
            f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})",
            *forged.values(),
        )
        stored_rows = await conn.fetch(
            f"SELECT {LEAF_COLUMNS} FROM audit_logs WHERE tenant_id = $1 AND seq = $2", tid, target
        )
        leaves = {leaf_hash(leaf_of_row(tid, r)) for r in stored_rows}
        assert len(leaves) == 2  # the genuine leaf and the forged one: only one can be in the tree
        async with client.app.state.runtime.db.read(tid) as pg:
            from app.verifiable.service import inclusion

            leaf_in_tree, _path = await inclusion(pg, tid, target - 1, size)
        assert [leaf == leaf_in_tree for leaf in leaves].count(True) == 1
        await conn.execute("DELETE FROM audit_logs WHERE tenant_id = $1 AND id = $2", tid, forged["id"])
        # delete one: its position has no event any more
        await conn.execute("DELETE FROM audit_logs WHERE tenant_id = $1 AND seq = $2", tid, target)
        assert await failing() == {target}
    finally:
        await conn.close()


async def _export(client: ApiClient, t: TenantFixture) -> list[str]:
    r = await client.get("/api/v1/logs/export", params={"format": "ndjson", "proofs": "true"}, headers=t.auditor)
    assert r.status_code == 200, r.text
    return r.text.splitlines()


async def test_export_with_proofs_and_the_offline_verifier(
    client: ApiClient, tenant: TenantFixture, database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = await client.get("/api/v1/logs/export", params={"format": "ndjson", "proofs": "true"}, headers=tenant.admin)
    assert r.status_code in (200, 404)  # nothing integrated yet: 404 unless the tenant's set-up events were
    await _post(client, tenant, 30)
    size = await _integrate(client, tenant)
    for bad in ({"format": "csv", "proofs": "true"}, {"format": "ndjson", "proofs": "true", "action": "CREATE"},
                {"format": "ndjson", "proofs": "maybe"}):  # fmt: skip
        assert (await client.get("/api/v1/logs/export", params=bad, headers=tenant.admin)).status_code == 422, bad
    lines = await _export(client, tenant)
    assert len(lines) == size + 1 and json.loads(lines[-1]).keys() == {"checkpoint"}
    keys_text = await _keys_text(client)
    verifiers = parse_verifier_keys(keys_text)
    report = verify_export(lines, verifiers, origin=f"auditlog.example/{tenant.id}")
    assert report.ok, report.failures
    assert report.events == size and report.erased == 0
    event = json.loads(lines[5])
    assert event["metadata"] is not None and event["proof"]["leaf_index"] == 5 and event["proof"]["payload"]

    def tampered(change: Any) -> list[str]:
        copy = list(lines)
        change(copy)
        return verify_export(copy, verifiers).failures

    def edit(index: int, **fields: Any) -> Any:
        def apply(copy: list[str]) -> None:
            record = json.loads(copy[index])
            for name, value in fields.items():
                if name == "payload":
                    raw = bytearray(base64.b64decode(record["proof"]["payload"]))
                    raw[-1] ^= 1
                    record["proof"]["payload"] = base64.b64encode(bytes(raw)).decode()
                else:
                    record[name] = value
            copy[index] = json.dumps(record)

        return apply

    for name, value in (("action", "DELETE"), ("message", "edited"), ("timestamp", "2020-01-01T00:00:00Z"),
                        ("ip_address", "10.0.0.99"), ("user_id", None), ("payload", None)):  # fmt: skip
        failures = tampered(edit(7, **{name: value}))
        assert failures and any("leaf 7" in f and "altered" in f for f in failures), (name, failures)
    assert any("leaf 9" in f for f in tampered(lambda c: c.pop(9)))  # deleted
    assert tampered(lambda c: c.insert(4, c[4]))  # inserted (a duplicate)
    swapped = tampered(lambda c: c.__setitem__(slice(3, 5), [c[4], c[3]]))  # reordered
    assert any("leaf 4 where leaf 3" in f for f in swapped)

    def swap_with_indexes(c: list[str]) -> None:
        a, b = json.loads(c[3]), json.loads(c[4])
        a["proof"]["leaf_index"], b["proof"]["leaf_index"] = 4, 3
        c[3], c[4] = json.dumps(b), json.dumps(a)

    assert any("altered" in f for f in tampered(swap_with_indexes))
    other = parse_verifier_keys(NoteSigner.parse(generate_signer_key("auditlog.example")).verifier.text())
    assert any("checkpoint refused" in f for f in verify_export(lines, other).failures)
    assert any("checkpoint refused" in f for f in verify_export(lines, verifiers, origin="auditlog.example/x").failures)

    # the CLI: exit 0 on the genuine export, 1 naming the event on a tampered one
    path, key_file = tmp_path / "export.ndjson", tmp_path / "keys.txt"
    path.write_text("\n".join(lines) + "\n")
    key_file.write_text(keys_text)
    assert cli_main(["verify", str(path), "--key", str(key_file)]) == 0
    copy = list(lines)
    edit(2, message="edited")(copy)
    path.write_text("\n".join(copy) + "\n")
    capsys.readouterr()
    assert cli_main(["verify", str(path), "--key", keys_text.splitlines()[0]]) == 1
    out = capsys.readouterr().out
    assert f"event {json.loads(lines[2])['id']}" in out and "FAILED" in out

    # erasure (retention removing an old event) keeps every proof valid; the export marks the leaf erased
    conn = await _owner(database)
    try:
        await conn.execute("DELETE FROM audit_logs WHERE tenant_id = $1 AND seq = 3", uuid.UUID(tenant.id))
    finally:
        await conn.close()
    lines = await _export(client, tenant)
    report = verify_export(lines, verifiers)
    assert report.ok and report.erased == 1, report.failures
    assert json.loads(lines[2])["erased"] is True


async def test_a_crash_mid_integration_leaves_no_gap_and_no_duplicate(
    client: ApiClient, tenant: TenantFixture, database: Database
) -> None:
    runtime = client.app.state.runtime
    keys = checkpoint_keys(runtime.settings)
    tid = uuid.UUID(tenant.id)
    await _post(client, tenant, 20)
    first = await _integrate(client, tenant)
    await _post(client, tenant, 280)

    class Crash(Exception):
        pass

    async def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        async with runtime.db.tenant(tid) as session:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            await integrate(raw, tid, keys, before_commit=crash)
    conn = await _owner(database)
    try:
        size = await conn.fetchval("SELECT size FROM merkle_trees WHERE tenant_id = $1", tid)
        assert size == first
        assert await conn.fetchval("SELECT max(tree_size) FROM merkle_checkpoints WHERE tenant_id = $1", tid) == first
        # a partial batch, then the rest
        async with runtime.db.tenant(tid) as session:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            await integrate(raw, tid, keys, batch=100)
        final = await _integrate(client, tenant)
        total = await conn.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tid)
        assert final == total
        assert await _integrate(client, tenant) == total  # nothing new: no duplicate leaves
        tiles = await conn.fetch("SELECT level, idx, width FROM merkle_tiles WHERE tenant_id = $1 ORDER BY 1, 2", tid)
        assert sum(w for level, _, w in tiles if level == 0) == total
        stored = await _stored_leaves(database, tenant.id)
        root = await conn.fetchval("SELECT root_hash FROM merkle_trees WHERE tenant_id = $1", tid)
        assert merkle.root_from_leaves([stored[s] for s in range(1, total + 1)]) == bytes(root)
        sizes = [
            r[0]
            for r in await conn.fetch("SELECT tree_size FROM merkle_checkpoints WHERE tenant_id = $1 ORDER BY 1", tid)
        ]
        assert sizes == [first, first + 100, final]
    finally:
        await conn.close()


async def test_consistency_between_every_pair_of_checkpoints(
    client: ApiClient, tenant: TenantFixture, database: Database
) -> None:
    for n in (1, 5, 250, 7, 300):  # sizes around the 256-leaf tile boundary
        await _post(client, tenant, n)
        await _integrate(client, tenant)
    conn = await _owner(database)
    try:
        notes = [r[0] for r in await conn.fetch(
            "SELECT note FROM merkle_checkpoints WHERE tenant_id = $1 ORDER BY tree_size", uuid.UUID(tenant.id)
        )]  # fmt: skip
    finally:
        await conn.close()
    verifiers = parse_verifier_keys(await _keys_text(client))
    checkpoints = [open_checkpoint(n, verifiers, origin=f"auditlog.example/{tenant.id}") for n in notes]
    assert len(checkpoints) == 5
    for i, old in enumerate(checkpoints):
        for new in checkpoints[i:]:
            r = await client.get(
                "/api/v1/checkpoints/consistency",
                params={"from": old.tree_size, "to": new.tree_size},
                headers=tenant.user,
            )
            assert r.status_code == 200, r.text
            proof = [_b64(h) for h in r.json()["hashes"]]
            merkle.verify_consistency(old.tree_size, new.tree_size, proof, old.root_hash, new.root_hash)
            if old.tree_size < new.tree_size:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old.tree_size, new.tree_size, proof, new.root_hash, new.root_hash)


async def test_a_missing_position_stops_the_tree_instead_of_skipping_it(
    client: ApiClient, tenant: TenantFixture, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    size = await _integrate(client, tenant)
    await _post(client, tenant, 5)
    conn = await _owner(database)
    try:  # an event removed before it was integrated (e.g. by hand): position size + 3 is gone
        await conn.execute("DELETE FROM audit_logs WHERE tenant_id = $1 AND seq = $2", uuid.UUID(tenant.id), size + 3)
    finally:
        await conn.close()
    with caplog.at_level("WARNING", logger="app.verifiable.service"):
        assert await _integrate(client, tenant) == size + 2
        assert await _integrate(client, tenant) == size + 2
    assert f"event seq {size + 3} is missing" in caplog.text
