"""The lake export's column-wise read of PostgreSQL (``analytics.lake.pg_batches``) writes every field of every
event exactly as stored: text that is empty, NULL, multi-line, quoted, backslashed, non-ASCII (bytes 0xC3 0xBF
and friends next to the 0xFF/0xFE markers it splits on), IPv4 and IPv6, timestamps to the microsecond, the
decrypted metadata and states, the payload ciphertext, and each row's leaf hash - from the tenant's Merkle
tiles where its tree reaches (ranges across tile boundaries) and computed where there is no tree; a payload
that fails authentication stops the export with nothing listed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from analytics.lake import LakeStore, export_tenant
from app.verifiable.integrator import integrate_tenant
from app.verifiable.keys import checkpoint_keys
from db.crypto import DecryptionError
from db.leaf import flat_leaf_hasher, packed_ip
from tests.conftest import Database, make_settings, make_tenant, running_app
from tests.integration.lake_support import api_conn, keyring_of, lake_rows, post_events

TEXTS = ["", "plain", 'say "hi", ok', "two\nlines\r\n", "back\\slash \\x00 \\\\", "ÿþ ÿ", "日本語 ✓ 🎉", "x" * 250]


def _events(n: int, start: datetime) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        text = TEXTS[i % len(TEXTS)]
        event: dict[str, Any] = {
            "action": ["CREATE", "UPDATE", "LOGIN"][i % 3],
            "resource_type": ["invoice", "ÿ-type"][i % 2],
            "severity": ["INFO", "ERROR"][i % 2],
            "timestamp": (start + timedelta(minutes=37 * i, microseconds=i)).isoformat(),
        }
        if i % 4:
            event.update(resource_id=text, session_id=f"s{i}", request_id=TEXTS[(i + 3) % len(TEXTS)])
        if i % 5:
            event.update(message=text if i % 11 else "long " * 8000, user_agent=TEXTS[(i + 1) % len(TEXTS)])
        if i % 3 == 0:
            event["ip_address"] = "10.0.0.7" if i % 2 else "2001:db8::ff"
        if i % 2:
            event["metadata"] = {"text": text, "n": i, "nested": {"list": [1, "ÿ", None]}}
        if i % 7 == 0:
            event["before_state"] = {"status": "draft", "note": text}
            event["after_state"] = {"status": "final"}
        out.append(event)
    return out


async def _stored(database: Database, tenant_id: uuid.UUID) -> dict[int, asyncpg.Record]:
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        rows = await conn.fetch(
            """SELECT seq, id::text AS id, "timestamp", received_at, action, resource_type, resource_id, user_id,
                      session_id, request_id, severity, host(ip_address) AS ip_address, user_agent, message, payload
               FROM audit_logs WHERE tenant_id = $1""",
            tenant_id,
        )
    finally:
        await conn.close()
    return {r["seq"]: r for r in rows}


async def test_every_field_is_written_as_stored_with_the_trees_leaf_or_a_computed_one(
    database: Database, tmp_path: Path
) -> None:
    store = LakeStore.from_url(str(tmp_path / "lake"))
    settings = make_settings(database, tmp_path, lake_url=store.url)
    start = datetime.now(UTC) - timedelta(days=20)
    async with running_app(settings) as client:
        runtime = client.app.state.runtime
        with_tree, without_tree = await make_tenant(client), await make_tenant(client)
        for tenant in (with_tree, without_tree):
            await post_events(client, tenant.id, _events(700, start))
        tree_id = uuid.UUID(with_tree.id)
        keys = checkpoint_keys(runtime.settings)
        while (done := await integrate_tenant(runtime.db, tree_id, keys)).new_size != done.old_size:
            pass
        conn = await api_conn(database)
        try:
            for tenant in (with_tree, without_tree):
                tid = uuid.UUID(tenant.id)
                # 300-row ranges: tile boundaries (every 256 leaves) fall inside ranges
                result = await export_tenant(conn, store, runtime.keyrings, tid, batch_rows=300)
                stored = await _stored(database, tid)
                assert result.rows == len(stored) > 700
                _, rows = await lake_rows(conn, store, tid, await keyring_of(client, tid))
                api = {}
                for r in rows:
                    got = await client.get(f"/api/v1/logs/{r['id']}", headers=tenant.auditor)
                    if got.status_code == 200:
                        api[r["id"]] = got.json()
                leaf = flat_leaf_hasher(tid)
                assert sorted(r["seq"] for r in rows) == sorted(stored)
                for r in rows:
                    s = stored[r["seq"]]
                    for name in ("id", "action", "resource_type", "resource_id", "user_id", "session_id",
                                 "request_id", "severity", "ip_address", "user_agent", "message", "payload"):  # fmt: skip
                        assert r[name] == s[name], (name, r[name], s[name])
                    assert r["timestamp"] == s["timestamp"] and r["received_at"] == s["received_at"]
                    micros = [int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
                              for t in (s["timestamp"], s["received_at"])]  # fmt: skip
                    expected_leaf = leaf((s["seq"], s["id"], *micros, *(s[c] for c in (
                        "action", "resource_type", "resource_id", "user_id", "session_id", "request_id", "severity")),
                        None if s["ip_address"] is None else packed_ip(s["ip_address"]),
                        s["user_agent"], s["message"], s["payload"]))  # fmt: skip
                    assert r["leaf_hash"] == expected_leaf
                    event = api.get(r["id"])
                    if event is None:
                        continue  # a service event the read routes leave out
                    for name in ("metadata", "before_state", "after_state"):
                        value = None if r[name] is None else msgspec.json.decode(r[name])
                        assert value == event.get(name), (name, r[name], event.get(name))
                assert sum(1 for r in rows if r["metadata"] is not None) >= 350
                assert {r["message"] for r in rows} >= set(TEXTS) and None in {r["message"] for r in rows}
        finally:
            await conn.close()


async def test_a_payload_that_fails_authentication_stops_the_export(database: Database, tmp_path: Path) -> None:
    store = LakeStore.from_url(str(tmp_path / "lake"))
    settings = make_settings(database, tmp_path, lake_url=store.url)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        await post_events(client, t.id, _events(40, datetime.now(UTC) - timedelta(days=2)))
        owner = await asyncpg.connect(database.dsn(database.owner_url))
        try:  # one ciphertext moved to another event: bound to its own id, it no longer authenticates
            await owner.execute(
                """UPDATE audit_logs SET payload = (SELECT payload FROM audit_logs WHERE tenant_id = $1
                   AND payload IS NOT NULL ORDER BY seq LIMIT 1)
                   WHERE tenant_id = $1 AND seq = (SELECT max(seq) FROM audit_logs WHERE tenant_id = $1
                   AND payload IS NOT NULL)""",
                tid,
            )
            conn = await api_conn(database)
            try:
                with pytest.raises(DecryptionError):
                    await export_tenant(conn, store, client.app.state.runtime.keyrings, tid, batch_rows=16)
            finally:
                await conn.close()
            assert await owner.fetchval("SELECT count(*) FROM lake_files WHERE tenant_id = $1", tid) == 0
            assert await owner.fetchval("SELECT count(*) FROM lake_rollups WHERE tenant_id = $1", tid) == 0
        finally:
            await owner.close()


async def test_leaf_hashes_come_from_the_trees_tiles_where_it_reaches(database: Database, tmp_path: Path) -> None:
    from analytics.lake.pg_batches import BATCH_SQL, columns_to_batch, tile_range
    from db.tenancy import bind_tenant

    settings = make_settings(database, tmp_path)
    async with running_app(settings) as client:
        runtime = client.app.state.runtime
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        await post_events(client, t.id, _events(600, datetime.now(UTC) - timedelta(days=20)))
        keys = checkpoint_keys(runtime.settings)
        while (done := await integrate_tenant(runtime.db, tid, keys)).new_size != done.old_size:
            pass
        ring = await keyring_of(client, tid)
        conn = await api_conn(database)
        try:
            lo, hi = 200, 530  # leaves 200..529: tiles 0..2, a boundary at 256 and at 512
            async with bind_tenant(conn, tid, readonly=True):
                row = list(await conn.fetchrow(BATCH_SQL, tid, lo, hi, *tile_range(lo, hi)))
        finally:
            await conn.close()
        tiles = row[-1]
        assert len(tiles) == done.new_size * 32 > hi * 32  # tiles 0..2 hold the tree's every leaf
        from_tree = columns_to_batch(row, lo, hi, ring).column("leaf_hash").to_pylist()
        assert from_tree == [tiles[i * 32 : i * 32 + 32] for i in range(lo, hi)]
        row[-1] = None  # no tree: computed from the row, the same hashes
        assert columns_to_batch(row, lo, hi, ring).column("leaf_hash").to_pylist() == from_tree
        row[-1] = bytes(i % 251 for i in range(len(tiles)))  # the tree's bytes are what the column holds
        assert columns_to_batch(row, lo, hi, ring).column("leaf_hash").to_pylist() == [
            row[-1][i * 32 : i * 32 + 32] for i in range(lo, hi)
        ]
        row[-1] = tiles[: 400 * 32]  # a tree that stops inside the range: computed
        assert columns_to_batch(row, lo, hi, ring).column("leaf_hash").to_pylist() == from_tree
