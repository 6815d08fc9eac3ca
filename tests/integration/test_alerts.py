"""Alerts end to end: rules through the API, evaluation by the real job worker, webhooks to a real HTTP server.

The receiver is an aiohttp server on 127.0.0.1 (allowed here with ``allow_private_urls``); the default refuses
such addresses, which the last tests check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.outbound.signing import verify
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app

pytestmark = pytest.mark.timeout(120)


@dataclass
class Receiver:
    url: str
    failures_left: int = 0
    requests: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receiver(failures: int = 0) -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.requests.append((time.monotonic(), dict(request.headers), await request.read()))
        if state.failures_left > 0:
            state.failures_left -= 1
            return web.Response(status=500, text="try later")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hook"
    state.failures_left = failures
    try:
        yield state
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def app_with_worker(database: Database, tmp_path: Path, **overrides: Any) -> AsyncIterator[ApiClient]:
    settings = make_settings(
        database,
        tmp_path,
        run_worker_in_process=True,
        alert_sweep_seconds=0.5,
        alert_retry_delay_seconds=2.0,
        **overrides,
    )
    async with running_app(settings) as client:
        yield client


async def _wait_for(predicate: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.1)


def _error(n: int) -> dict[str, Any]:
    return {"action": "DELETE", "resource_type": "database", "resource_id": f"db-{n}", "severity": "ERROR"}


async def test_a_firing_rule_posts_a_signed_webhook_with_the_matching_events(
    database: Database, tmp_path: Path
) -> None:
    async with receiver() as hook, app_with_worker(database, tmp_path, allow_private_urls=True) as client:
        tenant = await make_tenant(client)
        created = await client.post(
            "/api/v1/alerts",
            json={
                "name": "mass deletes",
                "match": {"severity": ["ERROR"], "action": "DELETE"},
                "threshold": 3,
                "window_seconds": 60,
                "webhook_url": hook.url,
            },
            headers=tenant.admin,
        )
        assert created.status_code == 201, created.text
        rule = created.json()
        secret = rule["secret"]
        assert secret.startswith("whsec_")
        listed = (await client.get("/api/v1/alerts", headers=tenant.auditor)).json()
        assert [r["id"] for r in listed] == [rule["id"]] and "secret" not in listed[0]

        # two matching events and one that does not match: below the threshold, nothing is sent
        for body in (_error(1), _error(2), {**_error(3), "severity": "INFO"}):
            assert (await client.post("/api/v1/logs", json=body, headers=tenant.user)).status_code == 201
        await asyncio.sleep(2.0)
        assert hook.requests == []

        third = await client.post("/api/v1/logs", json=_error(4), headers=tenant.user)
        await _wait_for(lambda: len(hook.requests) >= 1)
        _, headers, body = hook.requests[0]
        assert verify(secret, body, headers["X-Auditlog-Signature"])
        assert not verify("whsec_wrong", body, headers["X-Auditlog-Signature"])
        payload = json.loads(body)
        assert payload["alert_id"] == rule["id"] and payload["name"] == "mass deletes"
        assert payload["count"] == 3
        assert {e["resource_id"] for e in payload["events"]} == {"db-1", "db-2", "db-4"}
        assert third.json()["id"] in {e["id"] for e in payload["events"]}
        assert all(e["tenant_id"] == tenant.id for e in payload["events"])

        # cool-down: more matching events do not fire again
        for n in range(5, 9):
            await client.post("/api/v1/logs", json=_error(n), headers=tenant.user)
        await asyncio.sleep(2.0)
        assert len(hook.requests) == 1

        deliveries = (await client.get(f"/api/v1/alerts/{rule['id']}/deliveries", headers=tenant.auditor)).json()
        assert [(d["status"], d["http_status"], d["attempt"]) for d in deliveries] == [("succeeded", 204, 1)]

        # changing and deleting a rule is recorded in the tenant's log
        changed = await client.patch(f"/api/v1/alerts/{rule['id']}", json={"threshold": 10}, headers=tenant.admin)
        assert changed.status_code == 200 and changed.json()["threshold"] == 10
        assert (await client.delete(f"/api/v1/alerts/{rule['id']}", headers=tenant.admin)).status_code == 204
        trail = (
            await client.get("/api/v1/logs", params={"resource_type": "auditlog.alert"}, headers=tenant.admin)
        ).json()["items"]
        assert {e["action"] for e in trail} == {"ALERT_CREATED", "ALERT_UPDATED", "ALERT_DELETED"}


async def test_a_failing_receiver_is_retried_with_backoff_and_every_attempt_recorded(
    database: Database, tmp_path: Path
) -> None:
    async with receiver(failures=2) as hook, app_with_worker(database, tmp_path, allow_private_urls=True) as client:
        tenant = await make_tenant(client)
        rule = (
            await client.post(
                "/api/v1/alerts",
                json={"name": "any error", "match": {"severity": ["ERROR"]}, "webhook_url": hook.url},
                headers=tenant.admin,
            )
        ).json()
        await client.post("/api/v1/logs", json=_error(1), headers=tenant.user)
        await _wait_for(lambda: len(hook.requests) >= 3, within=60)
        times = [t for t, _, _ in hook.requests]
        assert 0.9 < times[1] - times[0] < times[2] - times[1]  # ~2 s, then ~4 s: the delay doubles
        bodies = {body for _, _, body in hook.requests}
        assert len(bodies) == 1  # every retry sends the same body ...
        assert len({h["X-Auditlog-Delivery"] for _, h, _ in hook.requests}) == 1  # ... under one delivery id
        for _, headers, body in hook.requests:
            assert verify(rule["secret"], body, headers["X-Auditlog-Signature"])

        async def attempts() -> list[tuple[str, int | None, int]]:
            got = (await client.get(f"/api/v1/alerts/{rule['id']}/deliveries", headers=tenant.admin)).json()
            return sorted((d["status"], d["http_status"], d["attempt"]) for d in got)

        deadline = time.monotonic() + 10
        while len(found := await attempts()) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        assert found == [("failed", 500, 1), ("failed", 500, 2), ("succeeded", 204, 3)]


async def test_private_and_metadata_urls_are_refused_by_default(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.1.2.3/x",
        "http://[::ffff:127.0.0.1]/x",
        "ftp://example.com/x",
    ):
        refused = await client.post("/api/v1/alerts", json={"name": "x", "webhook_url": url}, headers=tenant.admin)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["field"] == "webhook_url"
    assert (await client.get("/api/v1/alerts", headers=tenant.admin)).json() == []


async def test_another_tenants_alert_is_invisible(database: Database, tmp_path: Path) -> None:
    async with app_with_worker(database, tmp_path, allow_private_urls=True) as client:
        first, second = await make_tenant(client), await make_tenant(client)
        rule = (
            await client.post(
                "/api/v1/alerts", json={"name": "x", "webhook_url": "http://127.0.0.1:9/x"}, headers=first.admin
            )
        ).json()
        for method, path in (
            ("GET", f"/api/v1/alerts/{rule['id']}"),
            ("PATCH", f"/api/v1/alerts/{rule['id']}"),
            ("DELETE", f"/api/v1/alerts/{rule['id']}"),
            ("GET", f"/api/v1/alerts/{rule['id']}/deliveries"),
        ):
            response = await client.request(method, path, json={} if method == "PATCH" else None, headers=second.admin)
            assert response.status_code == 404, (method, path, response.text)
        assert (await client.get("/api/v1/alerts", headers=second.admin)).json() == []
        bad = await client.post(
            "/api/v1/alerts",
            json={"name": "x", "webhook_url": "http://127.0.0.1:9/x", "match": {"severity": ["LOUD"]}},
            headers=first.admin,
        )
        assert bad.status_code == 422
