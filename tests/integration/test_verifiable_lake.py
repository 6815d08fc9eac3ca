"""``auditlog verify <tenant's lake folder>``: the lake export writes what a leaf needs (payload ciphertext,
leaf hash) and the checkpoint at its watermark, stops at the tree's size, and the offline verifier checks a
real lake folder against a signed checkpoint and names the row that was altered, deleted, inserted or moved."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.lake import LAKE_SCHEMA, LakeStore, export_tenant
from analytics.lake.keys import lake_decryption_properties, lake_encryption_properties
from app.cli import main as cli_main
from app.verifiable.integrator import integrate_tenant
from app.verifiable.keys import checkpoint_keys
from app.verifiable.note import NoteSigner, generate_signer_key
from app.verifiable.verify import parse_verifier_keys
from app.verifiable.verify_lake import LakeReport, verify_lake
from db.crypto import TenantKeyring
from db.leaf import flat_leaf_hasher, packed_ip
from jobs.retention import archive_and_purge
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app
from tests.integration.lake_support import api_conn, keyring_of, post_events, sample_events

pytestmark = pytest.mark.timeout(240)


async def _integrate(client: ApiClient, tenant_id: uuid.UUID) -> int:
    runtime = client.app.state.runtime
    return (await integrate_tenant(runtime.db, tenant_id, checkpoint_keys(runtime.settings))).new_size


async def _last_seq(database: Database, tenant_id: uuid.UUID) -> int:
    import asyncpg

    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        return int(await conn.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id))
    finally:
        await conn.close()


def _verifiers(client: ApiClient) -> list[Any]:
    return checkpoint_keys(client.app.state.runtime.settings).verifiers


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def _rewrite(
    path: Path, keyring: TenantKeyring, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> None:
    """An insider with the tenant's keys rewrites a lake file: every column kept, encrypted as before."""
    rows = pq.read_table(path, decryption_properties=lake_decryption_properties(keyring)).to_pylist()
    table = pa.Table.from_pylist(change(rows), schema=LAKE_SCHEMA)
    pq.write_table(table, path, compression="zstd", encryption_properties=lake_encryption_properties(keyring))


def _releaf(tenant_id: uuid.UUID, row: dict[str, Any]) -> dict[str, Any]:
    """What an attacker who read db/leaf.py does after changing a row: recompute its leaf_hash."""
    micros = lambda t: int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))  # noqa: E731
    flat = (
        row["seq"], row["id"], micros(row["timestamp"]), micros(row["received_at"]), row["action"],
        row["resource_type"], row["resource_id"], row["user_id"], row["session_id"], row["request_id"],
        row["severity"], None if row["ip_address"] is None else packed_ip(row["ip_address"]), row["user_agent"],
        row["message"], row["payload"],
    )  # fmt: skip
    return {**row, "leaf_hash": flat_leaf_hasher(tenant_id)(flat)}


def _failed(report: LakeReport, *needles: str) -> str:
    text = "\n".join(report.failures)
    assert not report.ok, "tampering went unnoticed"
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


async def test_a_tenants_lake_verifies_offline_and_tampering_with_a_row_is_detected(
    database: Database, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    settings = make_settings(database, tmp_path, lake_url=str(lake))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with running_app(settings) as client:
        t, other = await make_tenant(client), await make_tenant(client)
        tid, oid = uuid.UUID(t.id), uuid.UUID(other.id)
        await post_events(client, t.id, sample_events(300, yesterday) + sample_events(200, datetime.now(UTC)))
        size1 = await _integrate(client, tid)
        await post_events(client, t.id, sample_events(20, datetime.now(UTC), marker="NOT-INTEGRATED"))
        await post_events(client, other.id, sample_events(5, yesterday))
        await _integrate(client, oid)
        store = LakeStore.from_url(str(lake))
        keyrings = client.app.state.runtime.keyrings
        keyring = await keyring_of(client, tid)
        conn = await api_conn(database)
        try:
            first = await export_tenant(conn, store, keyrings, tid)
            # the lake stops at the tree: the 20 events not yet integrated stay in PostgreSQL for now
            assert first.watermark == size1 <= await _last_seq(database, tid) - 20
            folder = lake / f"tenant_id={tid}"
            old_checkpoint = (folder / "checkpoint").read_text()
            report = verify_lake(folder, _verifiers(client))
            assert report.ok, report.failures
            assert report.covered == size1 and report.checkpoint is not None and report.checkpoint.tree_size == size1
            assert report.files >= 2 and report.rows == size1 and report.beyond == 0

            size2 = await _integrate(client, tid)
            assert (await export_tenant(conn, store, keyrings, tid)).watermark == size2 >= size1 + 20
            await export_tenant(conn, store, keyrings, oid)
        finally:
            await conn.close()
        key_file = tmp_path / "checkpoint-key"
        key_file.write_text((await client.get("/.well-known/auditlog/checkpoint-key")).text)
        verifiers = parse_verifier_keys(key_file.read_text())

    # the folder's own (newest) checkpoint, through the command line, from the tenant folder or the lake root
    assert verify_lake(folder, verifiers).covered == size2
    assert cli_main(["verify", str(folder), "--key", str(key_file)]) == 0
    # an older checkpoint the auditor kept: everything it covers holds; the newer rows are reported, not failed
    kept = tmp_path / "kept-checkpoint"
    kept.write_text(old_checkpoint)
    older = verify_lake(folder, verifiers, checkpoint=old_checkpoint)
    assert older.ok and older.covered == size1 and older.beyond == size2 - size1 and older.notes
    assert cli_main(["verify", str(folder), "--key", str(key_file), "--checkpoint", str(kept)]) == 0
    # another key, or another tenant's checkpoint, is refused
    stranger = NoteSigner.parse(generate_signer_key("auditlog.example"))
    assert not verify_lake(folder, [stranger.verifier]).ok
    other_checkpoint = (lake / f"tenant_id={oid}" / "checkpoint").read_text()
    _failed(verify_lake(folder, verifiers, checkpoint=other_checkpoint), f"the folder of tenant {tid}")

    def tampered(change: Callable[[Path], None]) -> LakeReport:
        copy = tmp_path / f"copy-{uuid.uuid4().hex[:8]}" / f"tenant_id={tid}"
        shutil.copytree(folder, copy)
        change(copy)
        return verify_lake(copy, verifiers)

    def in_file(index: int, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Callable[[Path], None]:
        return lambda copy: _rewrite(_files(copy)[index], keyring, edit)

    target: dict[str, Any] = {}

    def remember(rows: list[dict[str, Any]], i: int = 7) -> dict[str, Any]:
        target.update(seq=rows[i]["seq"], id=rows[i]["id"])
        return rows[i]

    # any clear field of one row: the row is named (file, row, seq, event id)
    def action(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        remember(rows)["action"] = "DELETE"
        return rows

    _failed(tampered(in_file(0, action)), "does not hash to its leaf hash", "row 8", f"event {target['id']}")

    def timestamp(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row = remember(rows, 3)
        row["timestamp"] += timedelta(microseconds=1)
        return rows

    _failed(tampered(in_file(1, timestamp)), f"(seq {target['seq']}, event {target['id']})")

    # the ciphertext of the encrypted parts
    def ciphertext(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row = remember(rows, 5)
        row["payload"] = row["payload"][:-1] + bytes([row["payload"][-1] ^ 1])
        return rows

    _failed(tampered(in_file(0, ciphertext)), f"event {target['id']}", "altered")

    # a change with a recomputed leaf_hash still breaks the root
    def releafed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row = remember(rows, 2)
        row["user_id"] = "someone-else"
        rows[2] = _releaf(tid, row)
        return rows

    _failed(tampered(in_file(0, releafed)), "do not hash to the checkpoint's root")

    # a row without its leaf hash (as compacted from a file of an older writer) is not taken on trust
    def no_leaf(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        remember(rows, 6)["leaf_hash"] = None
        return rows

    _failed(tampered(in_file(0, no_leaf)), f"event {target['id']}): no leaf hash")

    # a deleted row: its seq is named
    def delete(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        remember(rows, 10)
        return rows[:10] + rows[11:]

    _failed(tampered(in_file(1, delete)), "rows deleted", str(target["seq"]))

    # an inserted row (a second, different row for a position)
    def insert(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        forged = _releaf(tid, {**remember(rows, 4), "message": "forged", "id": str(uuid.uuid4())})
        return [*rows[:5], forged, *rows[5:]]

    _failed(tampered(in_file(0, insert)), f"seq {target['seq']} appears twice")

    # two rows moved (their positions swapped)
    def swap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[1]["seq"], rows[2]["seq"] = rows[2]["seq"], rows[1]["seq"]
        return rows

    text = _failed(tampered(in_file(0, swap)), "does not hash to its leaf hash")
    assert text.count("does not hash to its leaf hash") == 2

    # a whole file removed: its seqs are missing
    _failed(tampered(lambda copy: _files(copy)[0].unlink()), "rows deleted")

    # an identical copy of a file (as compaction leaves until collection) is reported, not failed
    def copy_file(copy: Path) -> None:
        source = _files(copy)[0]
        shutil.copy(source, source.with_name("compact-copy.parquet"))

    duplicated = tampered(copy_file)
    assert duplicated.ok and duplicated.duplicates > 0 and duplicated.notes

    # the command line says which event fails and exits 1
    bad = tmp_path / "bad" / f"tenant_id={tid}"
    shutil.copytree(folder, bad)
    _rewrite(_files(bad)[0], keyring, action)
    assert cli_main(["verify", str(bad), "--key", str(key_file)]) == 1


async def test_retention_never_removes_an_event_before_it_is_a_leaf(database: Database, tmp_path: Path) -> None:
    """The lake export stops at the tree's size, and retention removes only what the lake holds: events not
    yet integrated survive a purge, and the tree then integrates them without a gap."""
    lake = tmp_path / "lake"
    settings = make_settings(database, tmp_path, lake_url=str(lake))
    long_ago = datetime.now(UTC) - timedelta(days=3)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        await post_events(client, t.id, sample_events(60, long_ago))
        size = await _integrate(client, tid)
        await post_events(client, t.id, sample_events(40, long_ago, marker="LATE"))
        conn = await api_conn(database)
        try:
            purged = await archive_and_purge(
                conn, LakeStore.from_url(str(lake)), client.app.state.runtime.keyrings, tid, datetime.now(UTC)
            )
        finally:
            await conn.close()
        assert purged.watermark == size and purged.kept >= 40 and purged.deleted > 0
        total = await _last_seq(database, tid)
        assert await _integrate(client, tid) == total  # no gap: the 40 were still there to integrate
        assert verify_lake(lake / f"tenant_id={tid}", _verifiers(client)).ok
