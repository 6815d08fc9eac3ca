"""Export jobs through the real SAQ queue and worker: queued → done with rows and bytes, the file downloads
and holds what ``GET /logs/export`` streams, and another tenant's job is a 404."""

from __future__ import annotations

import asyncio
import json

from app.exports.job import ExportJobsPlugin
from app.settings import Settings
from jobs.worker import start_worker
from tests.conftest import ApiClient, make_tenant
from tests.integration.analytics_data import post_events, sample_events


async def test_an_export_job_runs_and_downloads(client: ApiClient, settings: Settings) -> None:
    a, b = await make_tenant(client), await make_tenant(client)
    ids_a = await post_events(client, a, sample_events(40))
    await post_events(client, b, sample_events(5))
    bad = await client.post("/api/v1/exports", json={"format": "xml"}, headers=a.auditor)
    assert bad.status_code in (400, 422)
    bad = await client.post(
        "/api/v1/exports", json={"format": "csv", "filters": {"severity": "LOUD"}}, headers=a.auditor
    )
    assert bad.status_code == 422 and "filters.severity" in bad.text
    handle = await start_worker(settings.jobs_config(), plugins=[ExportJobsPlugin()])
    try:
        created = await client.post(
            "/api/v1/exports", json={"format": "ndjson", "filters": {"severity": ["ERROR", "INFO"]}}, headers=a.auditor
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["status"] == "queued"
        for _ in range(300):
            status = (await client.get(f"/api/v1/exports/{job['id']}", headers=a.auditor)).json()
            if status["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.2)
    finally:
        await handle.stop()
    assert status["status"] == "done", status
    streamed = await client.get(
        "/api/v1/logs/export", params={"format": "ndjson", "severity": ["ERROR", "INFO"]}, headers=a.auditor
    )
    assert status["rows"] == len(streamed.content.splitlines()) > 0
    assert status["download_url"] == f"/api/v1/exports/{job['id']}/download"
    downloaded = await client.get(status["download_url"], headers=a.auditor)
    assert downloaded.status_code == 200
    assert status["bytes"] == len(downloaded.content)
    assert downloaded.content == streamed.content
    assert {json.loads(line)["id"] for line in downloaded.content.splitlines()} <= set(ids_a)
    for path in (f"/api/v1/exports/{job['id']}", f"/api/v1/exports/{job['id']}/download"):
        other = await client.get(path, headers=b.admin)
        assert other.status_code == 404, other.text
