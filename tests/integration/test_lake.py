"""The lake export against a local folder and a real S3 server (moto on 127.0.0.1): every committed event
exactly once, each tenant's folder holding only its rows, the sensitive columns encrypted (no marker in any
file's bytes, unreadable without the tenant's key, readable with it), the other columns readable by any
Parquet reader without a key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from analytics.lake import (
    EXPORT_STEPS,
    LakeStore,
    collect_garbage,
    export_tenant,
    live_files,
    open_lake_batches,
    tenant_prefix,
)
from analytics.lake.keys import LakeKeyError
from db.crypto import TenantKeyring, new_data_key
from tests.conftest import Database, make_settings, make_tenant, running_app
from tests.integration.lake_support import (
    MARKER,
    Crash,
    api_conn,
    crash_at,
    keyring_of,
    lake_rows,
    lake_store,
    post_events,
    s3_endpoint,
    sample_events,
)

__all__ = ["lake_store", "s3_endpoint"]  # fixtures used by this module


async def _pg_seqs(conn, tenant_id: uuid.UUID) -> list[tuple[str, int]]:
    async with conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tenant_id))
        rows = await conn.fetch("SELECT id::text, seq FROM audit_logs WHERE tenant_id = $1 ORDER BY seq", tenant_id)
    return [(r[0], r[1]) for r in rows]


async def _file_bytes(store: LakeStore, paths: list[str]) -> list[bytes]:
    out = []
    for path in paths:
        with store.open_input(path) as f:
            out.append(f.read())
    return out


async def test_export_writes_each_event_once_encrypted_in_its_tenant_folder(
    database: Database, tmp_path: Path, lake_store: LakeStore
) -> None:
    settings = make_settings(database, tmp_path)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with running_app(settings) as client:
        a, b = await make_tenant(client), await make_tenant(client)
        await post_events(client, a.id, sample_events(300, yesterday) + sample_events(200, datetime.now(UTC)))
        await post_events(client, b.id, sample_events(50, yesterday, marker="OTHER-TENANT"))
        ta, tb = uuid.UUID(a.id), uuid.UUID(b.id)
        ring_a, ring_b = await keyring_of(client, ta), await keyring_of(client, tb)
        keyrings = client.app.state.runtime.keyrings
        conn = await api_conn(database)
        try:
            for tid in (ta, tb):
                result = await export_tenant(conn, lake_store, keyrings, tid, batch_rows=128)
                assert result.rows > 0 and not result.skipped
            again = await export_tenant(conn, lake_store, keyrings, ta)
            assert again.rows == 0  # nothing new: a re-run adds nothing
            expected_a, expected_b = await _pg_seqs(conn, ta), await _pg_seqs(conn, tb)
            watermark, rows = await lake_rows(conn, lake_store, ta, ring_a)
            _, rows_b = await lake_rows(conn, lake_store, tb, ring_b)
            async with conn.transaction(readonly=True):
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(ta))
                _, files_a = await live_files(conn, ta)
        finally:
            await conn.close()

    # exactly once, in commit order, and the watermark is the last seq
    assert sorted((r["id"], r["seq"]) for r in rows) == expected_a
    assert watermark == expected_a[-1][1]
    assert sorted((r["id"], r["seq"]) for r in rows_b) == expected_b
    by_id = {r["id"]: r for r in rows}
    sample = next(r for r in rows if r["message"] == "event 5")
    assert msgspec.json.decode(sample["metadata"]) == {"note": f"{MARKER}-5"}
    assert msgspec.json.decode(sample["before_state"]) == {"total": 5}
    assert sample["ip_address"] == "10.1.2.3" and sample["timestamp"].tzinfo is not None
    assert len(by_id) == len(rows)

    # the tenant's folder holds only its rows; files are laid out tenant_id=…/date=…/
    listed = await lake_store.list(tenant_prefix(ta))
    assert sorted(listed) == sorted(f.path for f in files_a)
    assert {f.path.split("/")[1] for f in files_a} == {
        f"date={yesterday.date().isoformat()}",
        f"date={datetime.now(UTC).date().isoformat()}",
    }
    ids_in_a_folder = set()
    for path in listed:
        with lake_store.open_input(path) as f:
            ids_in_a_folder |= set(pq.ParquetFile(f).read(columns=["id"]).column("id").to_pylist())
    assert ids_in_a_folder == {i for i, _ in expected_a}

    # no sensitive value in clear in any file; plain columns readable with no key; sensitive ones only with it
    for blob in await _file_bytes(lake_store, listed + await lake_store.list(tenant_prefix(tb))):
        assert MARKER.encode() not in blob and b"OTHER-TENANT" not in blob
    with lake_store.open_input(files_a[0].path) as f:
        plain = pq.ParquetFile(f)
        assert plain.read(columns=["id", "action", "message"]).num_rows == files_a[0].rows
        with pytest.raises(OSError):
            plain.read(columns=["metadata"])
    with pytest.raises(ValueError):
        list(open_lake_batches(lake_store, files_a, None, ["metadata"]))
    with pytest.raises(LakeKeyError):  # another tenant's keys (or destroyed keys) do not open them
        list(open_lake_batches(lake_store, files_a, TenantKeyring(ta, new_data_key(1)), ["metadata"]))
    with pytest.raises(ValueError):
        list(open_lake_batches(lake_store, files_a, ring_b, ["metadata"]))


@pytest.mark.parametrize("step", EXPORT_STEPS)
async def test_export_is_exactly_once_when_it_crashes(
    database: Database, tmp_path: Path, lake_store: LakeStore, step: str
) -> None:
    settings = make_settings(database, tmp_path)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with running_app(settings) as client:
        t = await make_tenant(client)
        tid = uuid.UUID(t.id)
        keyrings = client.app.state.runtime.keyrings
        ring = await keyring_of(client, tid)
        conn = await api_conn(database)
        try:
            await post_events(client, t.id, sample_events(120, yesterday))
            await export_tenant(conn, lake_store, keyrings, tid)  # a first, clean run
            await post_events(client, t.id, sample_events(150, yesterday) + sample_events(90, datetime.now(UTC)))
            # steps met several times in a run (batches, files) crash at the second: mid-way
            after = 2 if step in ("batch_read", "file_staged", "file_durable") else 1
            with pytest.raises(Crash):
                await export_tenant(conn, lake_store, keyrings, tid, batch_rows=64, on_step=crash_at(step, after=after))
            # a crash never leaves the lock held, never lists a half-done run
            watermark_after_crash, rows_after_crash = await lake_rows(conn, lake_store, tid, ring)
            seqs_after_crash = sorted(r["seq"] for r in rows_after_crash)
            assert len(seqs_after_crash) == len(set(seqs_after_crash))
            assert seqs_after_crash == list(range(1, watermark_after_crash + 1))
            await export_tenant(conn, lake_store, keyrings, tid, batch_rows=64)
            expected = await _pg_seqs(conn, tid)
            watermark, rows = await lake_rows(conn, lake_store, tid, ring)
            await collect_garbage(conn, lake_store, tid, grace_seconds=0)
            async with conn.transaction(readonly=True):
                await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tid))
                _, files = await live_files(conn, tid)
        finally:
            await conn.close()
    assert sorted((r["id"], r["seq"]) for r in rows) == expected
    assert watermark == expected[-1][1]
    # leftovers of the crashed run are collected; listed files stay
    assert sorted(await lake_store.list(tenant_prefix(tid))) == sorted(f.path for f in files)
