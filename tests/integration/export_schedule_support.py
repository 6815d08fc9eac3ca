"""What the scheduled-export tests share: moto's standalone S3 server (a subprocess on 127.0.0.1), an HTTP
receiver on 127.0.0.1 that can fail on purpose, events stored with a chosen ``received_at`` through the ingest
writer, the PostgreSQL oracle of a window, and a scheduler driven by the test's clock."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from app.export_schedules.runner import RunnerConfig
from app.export_schedules.scheduler import ExportScheduler
from db.event_filters import SERVICE_EVENTS_SQL
from db.tenancy import bind_tenant
from tests.conftest import ApiClient, Database
from tests.servers import free_port

__all__ = [
    "MOTO_KEYS",
    "Receiver",
    "bucket",
    "ids_in",
    "moto_s3",
    "oracle",
    "read_object",
    "receiver",
    "s3_objects",
    "scheduler_for",
    "store_events",
]

MOTO_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's standalone S3 server, started as its own process on a free port of 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # moto imports a lot: 30 s was not enough at a load average of 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, **MOTO_KEYS)


def bucket(endpoint: str) -> str:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    _s3(endpoint).create_bucket(Bucket=name)
    return name


def s3_objects(endpoint: str, bucket_name: str) -> list[str]:
    listed = _s3(endpoint).list_objects_v2(Bucket=bucket_name)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def read_object(endpoint: str, bucket_name: str, key: str) -> bytes:
    body: bytes = _s3(endpoint).get_object(Bucket=bucket_name, Key=key)["Body"].read()
    return body


def ids_in(data: bytes, fmt: str) -> list[str]:
    """The event ids of an exported file, in file order."""
    if fmt == "ndjson":
        return [json.loads(line)["id"] for line in data.decode().splitlines() if line]
    if fmt == "csv":
        import csv

        return [row["id"] for row in csv.DictReader(io.StringIO(data.decode()))]
    if fmt == "parquet":
        return [str(v) for v in pq.read_table(io.BytesIO(data)).column("id").to_pylist()]
    raise ValueError(fmt)


@dataclass
class Receiver:
    url: str = ""
    failures_left: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def bodies(self) -> list[bytes]:
        """The request bodies as the application sees them (aiohttp undoes ``Content-Encoding: gzip``)."""
        return [gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body for _, body in self.requests]


@contextlib.asynccontextmanager
async def receiver(failures: int = 0) -> AsyncIterator[Receiver]:
    """An HTTP server on 127.0.0.1 that records every POST and answers 500 to the first ``failures`` of them."""
    state = Receiver(failures_left=failures)

    async def hook(request: web.Request) -> web.Response:
        state.requests.append((dict(request.headers), await request.read()))
        if state.failures_left > 0:
            state.failures_left -= 1
            return web.Response(status=500, text="try later")
        return web.Response(status=204)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/siem/collect", hook)
    runner = web.AppRunner(app, access_log=None)  # the receiver's own log would show its query token
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/siem/collect"
    try:
        yield state
    finally:
        await runner.cleanup()


async def store_events(client: ApiClient, tenant_id: str, events: list[tuple[datetime, dict[str, Any]]]) -> list[str]:
    """Store each event through the ingest writer with ``received_at`` = its time (as if the API had received it
    then); returns the ids in order."""
    from app.logs.prepare import prepare_event
    from app.logs.schemas import EventIn

    tid = uuid.UUID(tenant_id)
    writer = client.app.state.runtime.services["ingest"]
    ids = []
    for received_at, body in events:
        event = msgspec.json.decode(
            msgspec.json.encode({"timestamp": (received_at - timedelta(seconds=1)).isoformat(), **body}),
            type=EventIn,
        )
        prepared = prepare_event(event, tenant_id=tid, actor="tester", now=received_at)
        await writer.submit(tid, [prepared])
        ids.append(str(prepared.out.id))
    return ids


async def oracle(
    database: Database, tenant_id: str, start: datetime, end: datetime, extra: str = "", args: tuple[Any, ...] = ()
) -> list[str]:
    """The ids PostgreSQL holds for the window (client events; ``extra``: more of the schedule's filters), in
    commit order."""
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        async with bind_tenant(conn, uuid.UUID(tenant_id), readonly=True):
            rows = await conn.fetch(
                "SELECT id FROM audit_logs WHERE tenant_id = $1 AND received_at >= $2 AND received_at < $3"
                f" AND NOT {SERVICE_EVENTS_SQL} {extra} ORDER BY seq",
                uuid.UUID(tenant_id),
                start,
                end,
                *args,
            )
    finally:
        await conn.close()
    return [str(r["id"]) for r in rows]


def scheduler_for(
    client: ApiClient, *, lag: float = 0.0, retry_delay: float = 1.0, allow_private: bool = True
) -> ExportScheduler:
    """A scheduler over the test app's database, keys and ingest writer, driven by the test (``run_due(now)``)."""
    runtime = client.app.state.runtime
    cfg = RunnerConfig(
        db=runtime.db,
        keyrings=runtime.keyrings,
        lag=timedelta(seconds=lag),
        retry_delay=retry_delay,
        allow_private=allow_private,
        audit=runtime,
    )
    return ExportScheduler(cfg, tick_seconds=3600)
