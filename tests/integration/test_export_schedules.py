"""Scheduled exports end to end: schedules through the API, windows delivered to moto's standalone S3 server and
to an HTTP receiver on 127.0.0.1, each window checked against PostgreSQL (the oracle: the events whose
``received_at`` lies in it).

The destinations are on 127.0.0.1, so these tests allow private addresses (``AUDIT_ALLOW_PRIVATE_URLS=true``)
except the one that checks the default refuses them. Most tests drive the scheduler with their own clock
(``ExportScheduler.run_due(now)``) instead of waiting for the worker; one runs the real in-process worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.export_schedules.windows import align, window_name
from app.logs.prepare import new_event_id
from app.outbound.signing import verify
from db.tenancy import bind_tenant
from tests.conftest import ApiClient, Database, TenantFixture, make_settings, make_tenant, running_app
from tests.integration.export_schedule_support import (
    bucket,
    ids_in,
    moto_s3,
    oracle,
    read_object,
    receiver,
    s3_objects,
    scheduler_for,
    store_events,
)

pytestmark = pytest.mark.timeout(240)
__all__ = ["moto_s3"]  # the fixture, imported for pytest

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def _event(n: int, action: str = "UPDATE") -> dict[str, Any]:
    return {
        "action": action,
        "resource_type": "invoice",
        "resource_id": f"inv-{n}",
        "message": f"event {n}",
        "metadata": {"n": n},
    }


def _s3_destination(endpoint: str, name: str, prefix: str, **keys: str) -> dict[str, Any]:
    return {
        "type": "s3",
        "url": f"s3://{name}/{prefix}",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": keys.get("access_key_id", "AKIAEXPORTTEST"),
        "secret_access_key": keys.get("secret_access_key", "export-test-secret"),
    }


async def _create(client: ApiClient, tenant: TenantFixture, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/export-schedules", json=body, headers=tenant.admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _runs(client: ApiClient, tenant: TenantFixture, schedule_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/export-schedules/{schedule_id}/runs", headers=tenant.auditor)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_hourly_windows_hold_exactly_the_events_received_in_them(
    moto_s3: str, database: Database, tmp_path: Path
) -> None:
    async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        top = align(datetime.now(UTC), "hour")  # the window still open
        base = top - 3 * HOUR
        name = bucket(moto_s3)
        schedule = await _create(
            client,
            tenant,
            {
                "name": "hourly to s3",
                "every": "hour",
                "format": "ndjson",
                "filters": {"exclude_action": ["LOGIN"]},
                "start_at": (base + 20 * timedelta(minutes=1)).isoformat(),  # aligned down to base
                "destination": _s3_destination(moto_s3, name, "audit/hourly"),
            },
        )
        assert _t(schedule["next_window_start"]) == base
        assert schedule["destination"] == {
            "type": "s3",
            "url": f"s3://{name}/audit/hourly",
            "endpoint_url": moto_s3,
            "region": "us-east-1",
        }
        expected: dict[datetime, list[str]] = {}
        n = 0
        for w in range(3):
            start = base + w * HOUR
            batch = [(start, _event(n)), (start + timedelta(minutes=17), _event(n + 1)),
                     (start + HOUR - US, _event(n + 2))]  # fmt: skip
            expected[start] = await store_events(client, tenant.id, batch)
            await store_events(client, tenant.id, [(start + timedelta(minutes=5), _event(n + 3, "LOGIN"))])
            n += 4
        open_ids = await store_events(client, tenant.id, [(top, _event(99))])

        scheduler = scheduler_for(client, lag=30)
        first = await scheduler.run_due(top - timedelta(seconds=1))  # the third window has not ended
        assert [(r.status, r.window_start) for r in first] == [("delivered", base), ("delivered", base + HOUR)]
        assert await scheduler.run_due(top + timedelta(seconds=29)) == []  # ended, but within the close lag
        last = await scheduler.run_due(top + timedelta(seconds=30))
        assert [(r.status, r.window_start) for r in last] == [("delivered", base + 2 * HOUR)]

        keys = s3_objects(moto_s3, name)
        assert keys == [f"audit/hourly/{window_name(base + w * HOUR)}.ndjson" for w in range(3)]
        for w, key in enumerate(keys):
            start = base + w * HOUR
            got = ids_in(read_object(moto_s3, name, key), "ndjson")
            truth = await oracle(database, tenant.id, start, start + HOUR, "AND action <> 'LOGIN'")
            assert got == truth == expected[start]
        assert not set(open_ids) & {i for ids in expected.values() for i in ids}

        runs = await _runs(client, tenant, schedule["id"])
        assert sorted((_t(r["window_start"]), r["status"], r["rows"], r["attempt"], r["trigger"]) for r in runs) == [
            (base + w * HOUR, "delivered", 3, 1, "schedule") for w in range(3)
        ]
        assert all(r["bytes"] > 0 and r["location"].startswith(f"s3://{name}/audit/hourly/") for r in runs)
        shown = (await client.get(f"/api/v1/export-schedules/{schedule['id']}", headers=tenant.auditor)).json()
        assert _t(shown["next_window_start"]) == top and shown["last_error"] is None

        # each delivery is an audited read of the tenant
        trail = await client.get(
            "/api/v1/logs",
            params={"action": "EXPORT", "user_id": f"export_schedule:{schedule['id']}", "include_system": "true"},
            headers=tenant.admin,
        )
        records = trail.json()["items"]
        assert len(records) == 3
        assert sorted(r["metadata"]["window_start"] for r in records) == [
            window_name(base + w * HOUR) for w in range(3)
        ]
        assert all(r["resource_type"] == "audit_log" and r["metadata"]["count"] == 3 for r in records)


async def test_daily_windows_in_parquet_and_csv(moto_s3: str, database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        today = align(datetime.now(UTC), "day")
        base = today - 2 * DAY
        name = bucket(moto_s3)
        ids: dict[str, str] = {}
        for fmt in ("parquet", "csv"):
            made = await _create(
                client,
                tenant,
                {
                    "name": f"daily {fmt}",
                    "every": "day",
                    "format": fmt,
                    "filters": {"severity": ["INFO", "WARNING"]},
                    "start_at": base.isoformat(),
                    "destination": _s3_destination(moto_s3, name, f"daily-{fmt}/"),
                },
            )
            ids[fmt] = made["id"]
        times = [base, base + timedelta(hours=5), today - DAY - US, today - DAY, today - DAY + timedelta(hours=23),
                 today - US, today]  # fmt: skip
        await store_events(client, tenant.id, [(t, _event(i)) for i, t in enumerate(times)])
        await store_events(client, tenant.id, [(base + HOUR, {**_event(50), "severity": "ERROR"})])

        results = await scheduler_for(client).run_due(datetime.now(UTC))
        assert sorted((r.status, r.window_start) for r in results) == sorted(
            [("delivered", base), ("delivered", today - DAY)] * 2
        )
        for fmt in ("parquet", "csv"):
            keys = s3_objects(moto_s3, name)
            mine = [k for k in keys if k.startswith(f"daily-{fmt}/")]
            assert mine == [f"daily-{fmt}/{window_name(base)}.{fmt}", f"daily-{fmt}/{window_name(today - DAY)}.{fmt}"]
            for key, start in zip(mine, (base, today - DAY), strict=True):
                got = ids_in(read_object(moto_s3, name, key), fmt)
                truth = await oracle(database, tenant.id, start, start + DAY, "AND severity IN ('INFO', 'WARNING')")
                assert got == truth and len(got) == 3
            runs = await _runs(client, tenant, ids[fmt])
            assert sorted(r["rows"] for r in runs) == [3, 3]


async def test_an_event_committed_late_in_its_window_is_waited_for(
    moto_s3: str, database: Database, tmp_path: Path
) -> None:
    async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        tid = uuid.UUID(tenant.id)
        base = align(datetime.now(UTC), "hour") - 2 * HOUR
        name = bucket(moto_s3)
        schedule = await _create(
            client,
            tenant,
            {"name": "late", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
             "destination": _s3_destination(moto_s3, name, "late")},
        )  # fmt: skip
        await store_events(client, tenant.id, [(base + timedelta(minutes=m), _event(m)) for m in (1, 2)])

        # A transaction holding an event received inside the window, still open when the window ends.
        late_id = new_event_id()
        conn = await asyncpg.connect(database.dsn(database.api_url))
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("SELECT set_config('auditlog.tenant_id', $1, true)", str(tid))
            seq = await conn.fetchval(
                "UPDATE tenant_log_seq SET last_seq = last_seq + 1 WHERE tenant_id = $1 RETURNING last_seq", tid
            )
            await conn.execute(
                'INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, received_at, action, resource_type, message)'
                " VALUES ($1, $2, $3, $4, $5, 'UPDATE', 'invoice', 'committed late')",
                tid,
                base + timedelta(minutes=30),
                late_id,
                seq,
                base + timedelta(minutes=40),
            )
            scheduler = scheduler_for(client)
            waiting = await scheduler.run_due(datetime.now(UTC))
            assert [(r.status, r.window_start) for r in waiting] == [("not_closed", base)]
            assert s3_objects(moto_s3, name) == []
            assert await _runs(client, tenant, schedule["id"]) == []
            await transaction.commit()
        finally:
            await conn.close()

        done = await scheduler.run_due(datetime.now(UTC))
        assert [(r.status, r.window_start) for r in done] == [("delivered", base), ("delivered", base + HOUR)]
        got = ids_in(read_object(moto_s3, name, f"late/{window_name(base)}.ndjson"), "ndjson")
        assert str(late_id) in got
        assert got == await oracle(database, tenant.id, base, base + HOUR)
        assert len(got) == 3


_CRASH_SCRIPT = """
import asyncio, datetime, os, uuid
from app.export_schedules.runner import RunnerConfig, deliver_window
from app.export_schedules.scheduler import ExportScheduler
from db.crypto import LocalMasterKey
from db.engine import make_engine
from db.keyring import KeyringStore
from db.tenancy import TenantDB

async def main():
    engine = make_engine(os.environ["T_URL"], pool_size=2, max_overflow=2, application_name="crash-test")
    cfg = RunnerConfig(db=TenantDB(engine), keyrings=KeyringStore(LocalMasterKey.from_setting(os.environ["T_KEY"])),
                       lag=datetime.timedelta(0), retry_delay=1.0, allow_private=True)
    tid, sid = uuid.UUID(os.environ["T_TENANT"]), uuid.UUID(os.environ["T_SCHEDULE"])
    start = datetime.datetime.fromisoformat(os.environ["T_START"])
    now = datetime.datetime.now(datetime.UTC)
    assert await ExportScheduler(cfg).closed(tid, sid, start + datetime.timedelta(hours=1), now)

    async def crash():
        os._exit(17)  # the process dies between the upload and the bookkeeping

    await deliver_window(cfg, tid, sid, start, now=now, after_upload=crash)
    os._exit(0)

asyncio.run(main())
"""


async def test_a_crash_after_the_upload_leaves_one_object(moto_s3: str, database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, allow_private_urls=True)
    async with running_app(settings) as client:
        tenant = await make_tenant(client)
        base = align(datetime.now(UTC), "hour") - 2 * HOUR
        name = bucket(moto_s3)
        schedule = await _create(
            client,
            tenant,
            {"name": "crashy", "every": "hour", "format": "csv", "start_at": base.isoformat(),
             "destination": _s3_destination(moto_s3, name, "crash")},
        )  # fmt: skip
        await store_events(client, tenant.id, [(base + timedelta(minutes=m), _event(m)) for m in range(5)])
        key = f"crash/{window_name(base)}.csv"

        env = {**os.environ, "T_URL": settings.database_url or "", "T_KEY": settings.master_key or "",
               "T_TENANT": tenant.id, "T_SCHEDULE": schedule["id"], "T_START": base.isoformat()}  # fmt: skip
        crashed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", _CRASH_SCRIPT], env=env, cwd=os.getcwd(), capture_output=True,
            timeout=120,
        )  # fmt: skip
        assert crashed.returncode == 17, crashed.stderr.decode()[-3000:]
        assert s3_objects(moto_s3, name) == [key]  # uploaded ...
        runs = await _runs(client, tenant, schedule["id"])
        assert [(r["status"], r["attempt"]) for r in runs] == [("running", 1)]  # ... but not recorded
        shown = (await client.get(f"/api/v1/export-schedules/{schedule['id']}", headers=tenant.admin)).json()
        assert _t(shown["next_window_start"]) == base

        scheduler = scheduler_for(client)
        results = await scheduler.run_due(datetime.now(UTC))
        assert [(r.status, r.window_start) for r in results] == [("delivered", base), ("delivered", base + HOUR)]
        assert s3_objects(moto_s3, name) == [key, f"crash/{window_name(base + HOUR)}.csv"]
        truth = await oracle(database, tenant.id, base, base + HOUR)
        assert ids_in(read_object(moto_s3, name, key), "csv") == truth and len(truth) == 5

        # running the window once more (as POST /run does) replaces the object: still one copy
        again = await scheduler.run_manual(uuid.UUID(tenant.id), uuid.UUID(schedule["id"]), base, datetime.now(UTC))
        assert again.status == "delivered"
        assert s3_objects(moto_s3, name) == [key, f"crash/{window_name(base + HOUR)}.csv"]
        assert ids_in(read_object(moto_s3, name, key), "csv") == truth
        window = [r for r in await _runs(client, tenant, schedule["id"]) if _t(r["window_start"]) == base]
        assert sorted((r["attempt"], r["status"], r["trigger"]) for r in window) == [
            (1, "failed", "schedule"), (2, "delivered", "schedule"), (3, "delivered", "manual")
        ]  # fmt: skip
        assert "interrupted" in next(r["error"] for r in window if r["attempt"] == 1)


async def test_a_receiver_failing_twice_gets_the_window_on_the_third_attempt(
    database: Database, tmp_path: Path
) -> None:
    async with (
        receiver(failures=2) as hook,
        running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client,
    ):
        tenant = await make_tenant(client)
        base = align(datetime.now(UTC), "hour") - HOUR
        schedule = await _create(
            client,
            tenant,
            {"name": "siem", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
             "destination": {"type": "http", "url": hook.url}},
        )  # fmt: skip
        secret = schedule["secret"]
        assert secret.startswith("whsec_")
        ids = await store_events(client, tenant.id, [(base + timedelta(minutes=m), _event(m)) for m in range(4)])

        scheduler = scheduler_for(client, retry_delay=100)
        t0 = datetime.now(UTC)
        assert [r.status for r in await scheduler.run_due(t0)] == ["failed"]
        shown = (await client.get(f"/api/v1/export-schedules/{schedule['id']}", headers=tenant.admin)).json()
        first_wait = (_t(shown["retry_at"]) - t0).total_seconds()
        assert 100 <= first_wait <= 125 and shown["last_error"] == "HTTP 500"
        assert await scheduler.run_due(t0 + timedelta(seconds=99)) == []  # backing off
        t1 = t0 + timedelta(seconds=126)
        assert [r.status for r in await scheduler.run_due(t1)] == ["failed"]
        shown = (await client.get(f"/api/v1/export-schedules/{schedule['id']}", headers=tenant.admin)).json()
        assert 200 <= (_t(shown["retry_at"]) - t1).total_seconds() <= 250  # the delay doubled
        t2 = t1 + timedelta(seconds=251)
        third = await scheduler.run_due(t2)  # (the next window may have closed by then too)
        assert [(r.status, r.rows) for r in third if r.window_start == base] == [("delivered", 4)]

        sent = [(h, b) for h, b in hook.requests if h["X-Auditlog-Window-Start"] == window_name(base)]
        assert len(sent) == 3
        assert len({h["Idempotency-Key"] for h, _ in sent}) == 1  # the same window, the same key every time
        headers, body = sent[-1]  # as the application sees it: the server undid the gzip content coding
        assert headers["Content-Encoding"] == "gzip" and headers["Content-Type"] == "application/x-ndjson"
        assert headers["X-Auditlog-Signature"].count("v1=") == 2  # over the gzip bytes, and over the content
        assert verify(secret, body, headers["X-Auditlog-Signature"])
        assert not verify("whsec_wrong", body, headers["X-Auditlog-Signature"])
        assert headers["X-Auditlog-Window-End"] == window_name(base + HOUR)
        assert headers["X-Auditlog-Event-Count"] == "4"
        assert ids_in(body, "ndjson") == ids == await oracle(database, tenant.id, base, base + HOUR)

        runs = [r for r in await _runs(client, tenant, schedule["id"]) if _t(r["window_start"]) == base]
        assert [(r["attempt"], r["status"], r["http_status"]) for r in runs] == [
            (3, "delivered", 204), (2, "failed", 500), (1, "failed", 500)
        ]  # fmt: skip
        assert runs[1]["error"] == "HTTP 500"


async def _wait_for(predicate: Any, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.1)


async def test_missed_windows_are_caught_up_in_order_when_a_worker_is_back(database: Database, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    top = align(now, "hour")
    if top + HOUR - now < timedelta(seconds=90):  # keep the hour from turning during the test
        await asyncio.sleep((top + HOUR - now).total_seconds() + 1)
        top = align(datetime.now(UTC), "hour")
    base = top - 4 * HOUR
    async with receiver() as hook:
        # No worker: the schedule and its events exist, nothing is delivered.
        async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
            tenant = await make_tenant(client)
            schedule = await _create(
                client,
                tenant,
                {"name": "missed", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
                 "destination": {"type": "http", "url": hook.url}},
            )  # fmt: skip
            for w in range(4):
                start = base + w * HOUR
                await store_events(client, tenant.id, [(start + timedelta(minutes=m), _event(m)) for m in (0, 30)])
            await asyncio.sleep(0.5)
            assert hook.requests == []

        # A worker is back (in the API process): it delivers the four windows, oldest first.
        settings = make_settings(
            database,
            tmp_path,
            allow_private_urls=True,
            run_worker_in_process=True,
            export_schedule_tick_seconds=0.2,
            export_schedule_close_lag_seconds=0,
        )
        async with running_app(settings) as client:
            await _wait_for(lambda: len(hook.requests) >= 4)
            starts = [headers["X-Auditlog-Window-Start"] for headers, _ in hook.requests[:4]]
            assert starts == [window_name(base + w * HOUR) for w in range(4)]
            for w, body in enumerate(hook.bodies()[:4]):
                start = base + w * HOUR
                assert ids_in(body, "ndjson") == await oracle(database, tenant.id, start, start + HOUR)
                assert verify(schedule["secret"], body, hook.requests[w][0]["X-Auditlog-Signature"])

            # POST /run: the last closed window now; it was delivered already, so it goes again under its key
            asked = await client.post(f"/api/v1/export-schedules/{schedule['id']}/run", headers=tenant.admin)
            assert asked.status_code == 202, asked.text
            window = window_name(_t(asked.json()["window_start"]))
            assert asked.json()["status"] == "queued"

            def sent(name: str) -> list[dict[str, str]]:
                return [h for h, _ in hook.requests if h["X-Auditlog-Window-Start"] == name]

            await _wait_for(lambda: len(sent(window)) >= 2)
            assert len({h["Idempotency-Key"] for h in sent(window)}) == 1
            # the run is recorded just after the receiver answered: poll for it
            deadline = time.monotonic() + 30
            while True:
                runs = await _runs(client, tenant, schedule["id"])
                if any(r["trigger"] == "manual" and r["status"] == "delivered" for r in runs):
                    break
                assert time.monotonic() < deadline, runs
                await asyncio.sleep(0.2)
            assert all(r["status"] == "delivered" for r in runs)


async def test_another_tenant_cannot_see_or_run_a_schedule(database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        owner, other = await make_tenant(client), await make_tenant(client)
        schedule = await _create(
            client,
            owner,
            {"name": "mine", "every": "day", "format": "ndjson",
             "destination": {"type": "http", "url": "http://127.0.0.1:9/collect"}},
        )  # fmt: skip
        path = f"/api/v1/export-schedules/{schedule['id']}"
        for headers in (other.admin, other.auditor):
            assert (await client.get(path, headers=headers)).status_code == 404
            assert (await client.get(f"{path}/runs", headers=headers)).status_code == 404
            assert (await client.get("/api/v1/export-schedules", headers=headers)).json() == []
        assert (await client.patch(path, json={"name": "theirs"}, headers=other.admin)).status_code == 404
        assert (await client.post(f"{path}/run", headers=other.admin)).status_code == 404
        assert (await client.delete(path, headers=other.admin)).status_code == 404

        # another tenant's worker-side view: its tenant-bound reads find nothing either
        scheduler = scheduler_for(client)
        gone = await scheduler.run_manual(uuid.UUID(other.id), uuid.UUID(schedule["id"]), align(datetime.now(UTC), "day"),
                                          datetime.now(UTC))  # fmt: skip
        assert gone.status == "gone"

        # roles inside the owner's tenant: Auditor reads, only Admin writes; a User does neither
        assert (await client.get(path, headers=owner.auditor)).status_code == 200
        assert (await client.patch(path, json={"name": "x"}, headers=owner.auditor)).status_code == 403
        assert (await client.post(f"{path}/run", headers=owner.auditor)).status_code == 403
        assert (await client.delete(path, headers=owner.auditor)).status_code == 403
        assert (await client.get(path, headers=owner.user)).status_code == 403
        assert (await client.get(path, headers=owner.admin)).json()["name"] == "mine"


async def test_credentials_never_appear_in_a_response_a_log_line_or_a_database_column(
    moto_s3: str,
    database: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:

    token = uuid.uuid4().hex
    key_id, secret_key = f"AKIA{token[:16].upper()}", f"s3-secret-{token}"
    header_value, query_token = f"Splunk hec-{token}", f"qtok{token}"
    secrets = [key_id, secret_key, header_value, query_token]
    responses: list[str] = []
    settings = make_settings(database, tmp_path, allow_private_urls=True, log_level="DEBUG")  # every line there is
    async with receiver() as hook, running_app(settings) as client:
        caplog.set_level(logging.DEBUG)  # after the app configured logging: every record reaches the capture
        tenant = await make_tenant(client)
        base = align(datetime.now(UTC), "hour") - HOUR
        name = bucket(moto_s3)
        s3 = await client.post(
            "/api/v1/export-schedules",
            json={"name": "to s3", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
                  "destination": _s3_destination(moto_s3, name, "creds", access_key_id=key_id,
                                                 secret_access_key=secret_key)},
            headers=tenant.admin,
        )  # fmt: skip
        http = await client.post(
            "/api/v1/export-schedules",
            json={"name": "to siem", "every": "hour", "format": "csv", "start_at": base.isoformat(),
                  "destination": {"type": "http", "url": f"{hook.url}?token={query_token}",
                                  "headers": {"Authorization": header_value}}},
            headers=tenant.admin,
        )  # fmt: skip
        broken = await client.post(
            "/api/v1/export-schedules",
            json={"name": "no bucket", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
                  "destination": _s3_destination(moto_s3, "no-such-bucket-here", "x", access_key_id=key_id,
                                                 secret_access_key=secret_key)},
            headers=tenant.admin,
        )  # fmt: skip
        for made in (s3, http, broken):
            assert made.status_code == 201, made.text
            responses.append(made.text)
        assert http.json()["destination"] == {
            "type": "http", "url": hook.url + "?token=***", "header_names": ["Authorization"]
        }  # fmt: skip
        await store_events(client, tenant.id, [(base + timedelta(minutes=3), _event(1))])
        results = await scheduler_for(client).run_due(datetime.now(UTC))
        assert sorted(r.status for r in results) == ["delivered", "delivered", "failed"]
        assert hook.requests[0][0]["Authorization"] == header_value  # the receiver did get its token

        patched = await client.patch(
            f"/api/v1/export-schedules/{s3.json()['id']}",
            json={"destination": _s3_destination(moto_s3, name, "creds2", access_key_id=key_id,
                                                 secret_access_key=secret_key)},
            headers=tenant.admin,
        )  # fmt: skip
        assert patched.status_code == 200
        responses.append(patched.text)
        responses.append((await client.get("/api/v1/export-schedules", headers=tenant.admin)).text)
        for made in (s3, http, broken):
            sid = made.json()["id"]
            responses.append((await client.get(f"/api/v1/export-schedules/{sid}", headers=tenant.auditor)).text)
            responses.append((await client.get(f"/api/v1/export-schedules/{sid}/runs", headers=tenant.auditor)).text)
        failed = [r for r in await _runs(client, tenant, broken.json()["id"]) if r["status"] == "failed"]
        assert failed and "NoSuchBucket" in failed[0]["error"]
        trail = await client.get("/api/v1/logs", params={"include_system": "true", "limit": 1000}, headers=tenant.admin)
        responses.append(trail.text)  # the administrative and EXPORT events, decrypted

    logs = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    out, err = capfd.readouterr()
    admin = await asyncpg.connect(database.admin_dsn, database=database.name)  # a superuser: every row
    try:
        tables = await admin.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        dump = []
        for t in tables:
            rows = await admin.fetch(f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" t')
            dump.extend(r["row"] for r in rows)
    finally:
        await admin.close()
    database_text = "\n".join(dump)
    assert "NoSuchBucket" in logs + err  # the capture does hold the worker's log lines
    assert "export_schedules" in {t["tablename"] for t in tables} and len(dump) > 50
    for value in secrets:
        hexed = value.encode().hex()
        for where, text in (
            ("responses", "\n".join(responses)),
            ("logs", logs + out + err),
            ("database", database_text),
        ):
            assert value not in text, (
                f"{value!r} found in {where}: {text[max(0, text.find(value) - 100) : text.find(value) + 600]!r}"
            )
            assert hexed not in text, f"{value!r} (hex) found in {where}"


async def test_private_and_metadata_addresses_are_refused_by_default(
    moto_s3: str, database: Database, tmp_path: Path
) -> None:
    async with running_app(make_settings(database, tmp_path)) as client:  # AUDIT_ALLOW_PRIVATE_URLS unset
        tenant = await make_tenant(client)
        refused_http = [
            "http://127.0.0.1:8080/collect",
            "http://localhost/collect",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/collect",
            "http://10.1.2.3/collect",
            "http://192.168.0.10/collect",
            "http://100.100.100.200/latest/meta-data/",  # the shared range some clouds serve metadata from
            "http://[::ffff:169.254.169.254]/",
            "file:///etc/passwd",
        ]
        for url in refused_http:
            response = await client.post(
                "/api/v1/export-schedules",
                json={"name": "x", "every": "hour", "format": "ndjson", "destination": {"type": "http", "url": url}},
                headers=tenant.admin,
            )
            assert response.status_code == 422, (url, response.text)
            assert response.json()["errors"][0]["field"] == "destination.url"
        for endpoint in ("http://127.0.0.1:9000", "http://169.254.169.254", moto_s3):
            body = {"name": "x", "every": "hour", "format": "ndjson",
                    "destination": {**_s3_destination(endpoint, "bucket-x", "p"), "endpoint_url": endpoint}}  # fmt: skip
            response = await client.post("/api/v1/export-schedules", json=body, headers=tenant.admin)
            assert response.status_code == 422, (endpoint, response.text)
            assert response.json()["errors"][0]["field"] == "destination.endpoint_url"
        assert (await client.get("/api/v1/export-schedules", headers=tenant.admin)).json() == []

    # A schedule saved while private addresses were allowed is refused by a worker that does not allow them,
    # before any byte leaves.
    async with receiver() as hook, running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        base = align(datetime.now(UTC), "hour") - HOUR
        schedule = await _create(
            client,
            tenant,
            {"name": "internal", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
             "destination": {"type": "http", "url": hook.url}},
        )  # fmt: skip
        await store_events(client, tenant.id, [(base + timedelta(minutes=1), _event(1))])
        results = await scheduler_for(client, allow_private=False).run_due(datetime.now(UTC))
        assert [r.status for r in results] == ["failed"]
        assert hook.requests == []
        runs = await _runs(client, tenant, schedule["id"])
        assert runs[0]["status"] == "failed" and runs[0]["error"].startswith("refused: url resolves to 127.0.0.1")


async def test_bad_bodies_are_refused_with_the_field_named(database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        good = {"name": "ok", "every": "hour", "format": "ndjson",
                "destination": {"type": "http", "url": "http://127.0.0.1:9/x"}}  # fmt: skip
        cases: list[tuple[dict[str, Any], str]] = [
            ({**good, "every": "week"}, "every"),
            ({**good, "format": "json"}, "format"),
            ({**good, "filters": {"limit": 5}}, "limit"),
            ({**good, "filters": {"ip_address": "1.2.3"}}, "filters.ip_address"),
            (
                {**good, "filters": {"start_time": "2026-02-01T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}},
                "filters.start_time",
            ),
            ({**good, "filters": {"severity": ["LOUD"]}}, "filters.severity"),
            ({**good, "filters": {"start_time": "2026-01-01T00:00:00"}}, "filters.start_time"),
            ({**good, "start_at": "2026-01-01T00:00:00"}, "start_at"),
            ({**good, "start_at": "2001-01-01T00:00:00Z"}, "start_at"),
            ({**good, "destination": {"type": "ftp", "url": "ftp://x"}}, "destination"),
            (
                {
                    **good,
                    "destination": {
                        "type": "s3",
                        "url": "s3://Bad_Bucket/x",
                        "access_key_id": "a",
                        "secret_access_key": "b",
                    },
                },
                "destination.url",
            ),
            ({**good, "destination": {"type": "s3", "url": "s3://bucket/x"}}, "destination"),
            (
                {
                    **good,
                    "destination": {
                        "type": "http",
                        "url": "http://127.0.0.1:9/x",
                        "headers": {"X-Auditlog-Signature": "forged"},
                    },
                },
                "destination.headers",
            ),
        ]
        for body, field in cases:
            response = await client.post("/api/v1/export-schedules", json=body, headers=tenant.admin)
            assert response.status_code in (400, 422), (body, response.text)
            assert field in response.text, (field, response.text)
        made = await _create(client, tenant, good)
        patched = await client.patch(
            f"/api/v1/export-schedules/{made['id']}", json={"every": "day", "enabled": False}, headers=tenant.admin
        )
        assert patched.status_code == 200 and patched.json()["every"] == "day" and not patched.json()["enabled"]
        assert (
            await client.post(f"/api/v1/export-schedules/{made['id']}/run", headers=tenant.admin)
        ).status_code == 409
        bad_limit = await client.get(f"/api/v1/export-schedules/{made['id']}/runs?limit=0", headers=tenant.admin)
        assert bad_limit.status_code in (400, 422)
        assert (await client.delete(f"/api/v1/export-schedules/{made['id']}", headers=tenant.admin)).status_code == 204
        assert (await client.get(f"/api/v1/export-schedules/{made['id']}", headers=tenant.admin)).status_code == 404


async def test_positions_bound_the_read_of_a_window(database: Database, tmp_path: Path) -> None:
    """A window is read from the last position marked before its start: the run records that bound, and the
    window still holds exactly its events (an event of the window never sits below the bound)."""
    async with receiver() as hook, running_app(make_settings(database, tmp_path, allow_private_urls=True)) as client:
        tenant = await make_tenant(client)
        tid = uuid.UUID(tenant.id)
        base = align(datetime.now(UTC), "hour") - 3 * HOUR
        schedule = await _create(
            client,
            tenant,
            {"name": "marks", "every": "hour", "format": "ndjson", "start_at": base.isoformat(),
             "destination": {"type": "http", "url": hook.url}},
        )  # fmt: skip
        scheduler = scheduler_for(client, lag=60)
        # events of the first window, then a mark taken (as the scheduler does) a while before the second starts
        await store_events(client, tenant.id, [(base + timedelta(minutes=m), _event(m)) for m in (1, 2, 3)])
        await scheduler.tick(base + HOUR - timedelta(minutes=5))
        await store_events(client, tenant.id, [(base + HOUR + timedelta(minutes=m), _event(m)) for m in (1, 2)])
        results = await scheduler.run_due(datetime.now(UTC))
        assert [r.status for r in results] == ["delivered", "delivered", "delivered"]
        conn = await asyncpg.connect(database.dsn(database.api_url))
        try:
            async with bind_tenant(conn, tid, readonly=True):
                bound = await conn.fetchval(
                    "SELECT seq_after FROM export_schedule_runs WHERE tenant_id = $1 AND schedule_id = $2"
                    " AND window_start = $3",
                    tid,
                    uuid.UUID(schedule["id"]),
                    base + HOUR,
                )
                first_max, second_min = await conn.fetchrow(
                    "SELECT max(seq) FILTER (WHERE received_at < $2), min(seq) FILTER (WHERE received_at >= $2)"
                    " FROM audit_logs WHERE tenant_id = $1 AND received_at >= $3 AND received_at < $4"
                    " AND resource_type = 'invoice'",
                    tid,
                    base + HOUR,
                    base,
                    base + 2 * HOUR,
                )
        finally:
            await conn.close()
        assert first_max <= bound < second_min  # the second window's read starts above the first's events
        second = ids_in(hook.bodies()[1], "ndjson")
        assert second == await oracle(database, tenant.id, base + HOUR, base + 2 * HOUR) and len(second) == 2


async def test_a_large_window_is_uploaded_in_parts_and_a_failed_upload_leaves_nothing(moto_s3: str) -> None:
    from app.export_schedules.destinations import PART_BYTES, upload_s3
    from app.export_schedules.schemas import S3Destination

    name = bucket(moto_s3)
    dest = S3Destination(url=f"s3://{name}/parts", access_key_id="AKIAPARTS", secret_access_key="parts-secret",
                         endpoint_url=moto_s3, region="us-east-1")  # fmt: skip
    pieces = [os.urandom(1024) * (3 * 1024 + n) for n in range(7)]  # ~21 MiB in uneven chunks: three parts

    async def chunks() -> Any:
        for piece in pieces:
            yield piece

    done = await upload_s3(dest, "big.ndjson", chunks(), "application/x-ndjson", allow_private=True)
    expected = b"".join(pieces)
    assert len(expected) > 2 * PART_BYTES and done.bytes == len(expected)
    assert read_object(moto_s3, name, "parts/big.ndjson") == expected

    async def failing() -> Any:
        yield pieces[0] * 4  # 12 MiB: one part is sent before the read fails
        raise RuntimeError("the read failed")

    with pytest.raises(RuntimeError, match="the read failed"):
        await upload_s3(dest, "broken.ndjson", failing(), "application/x-ndjson", allow_private=True)
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_s3, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")  # fmt: skip
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []  # aborted
    assert s3_objects(moto_s3, name) == ["parts/big.ndjson"]
