"""Shared fixtures and helpers of the lake and retention tests: a real S3 (moto's standalone server on
127.0.0.1) or a local folder as the lake, events posted through the API, and the lake read back."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from analytics.lake import LakeStore, live_files, open_lake_batches
from db.crypto import TenantKeyring
from tests.conftest import ApiClient, Database
from tests.servers import free_port

__all__ = ["Crash", "api_conn", "crash_at", "keyring_of", "lake_rows", "lake_store", "post_events", "s3_endpoint"]

MARKER = "LAKE-MARKER-7f3a9c"


class Crash(Exception):
    """A crash injected at a named step of an export or a compaction."""


def crash_at(step: str, *, after: int = 1) -> Callable[[str], None]:
    """An ``on_step`` hook that raises :class:`Crash` the ``after``-th time ``step`` is reached."""
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] >= after:
                raise Crash(step)

    return hook


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, with throw-away credentials in the environment."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(params=["local", "s3"])
def lake_store(request: pytest.FixtureRequest, tmp_path: Path) -> LakeStore:
    if request.param == "local":
        return LakeStore.from_url(str(tmp_path / "lake"))
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"lake-{secrets.token_hex(6)}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return LakeStore.from_url(f"s3://{bucket}/audit", endpoint_url=endpoint)


async def api_conn(database: Database) -> asyncpg.Connection:
    return await asyncpg.connect(database.dsn(database.api_url))


async def post_events(client: ApiClient, tenant_id: str | uuid.UUID, events: list[dict[str, Any]]) -> list[str]:
    """Store events through the ingest writer (the write path behind POST /logs/bulk), in order."""
    from app.logs.prepare import prepare_event
    from app.logs.schemas import EventIn

    tid = uuid.UUID(str(tenant_id))
    writer = client.app.state.runtime.services["ingest"]
    ids: list[str] = []
    for i in range(0, len(events), 2000):
        now = datetime.now(UTC)
        prepared = [
            prepare_event(
                msgspec.json.decode(msgspec.json.encode(e), type=EventIn), tenant_id=tid, actor="tester", now=now
            )
            for e in events[i : i + 2000]
        ]
        await writer.submit(tid, prepared)
        ids.extend(str(p.out.id) for p in prepared)
    return ids


def sample_events(n: int, when: datetime, *, marker: str = MARKER) -> list[dict[str, Any]]:
    return [
        {
            "action": "UPDATE" if i % 3 else "LOGIN",
            "resource_type": "invoice",
            "resource_id": f"inv-{i}",
            "user_id": f"user-{i % 7}",
            "severity": "WARNING" if i % 11 == 0 else "INFO",
            "timestamp": when.isoformat(),
            "ip_address": "10.1.2.3",
            "message": f"event {i}",
            "metadata": {"note": f"{marker}-{i}"},
            "before_state": {"total": i},
            "after_state": {"total": i + 1, "note": marker},
        }
        for i in range(n)
    ]


async def keyring_of(client: ApiClient, tenant_id: uuid.UUID) -> TenantKeyring:
    runtime = client.app.state.runtime
    async with runtime.db.tenant(tenant_id) as session:
        return await runtime.keyrings.get(session, tenant_id)


async def lake_rows(
    conn: asyncpg.Connection, store: LakeStore, tenant_id: uuid.UUID, keyring: TenantKeyring | None
) -> tuple[int, list[dict[str, Any]]]:
    """The tenant's watermark and every row of its live lake files."""
    async with conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tenant_id))
        watermark, files = await live_files(conn, tenant_id)
    rows: list[dict[str, Any]] = []
    columns = None if keyring is not None else ["id", "seq", "action"]
    for batch in open_lake_batches(store, files, keyring, columns):
        rows.extend(batch.to_pylist())
    return watermark, rows
