"""``GET /api/v1/logs/export``: every format round-trips every field as ``GET /logs/{id}`` shows it, every
filter selects what ``GET /logs`` lists, the export is audited, and another tenant's events never appear."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import ApiClient, TenantFixture, make_tenant
from tests.integration.analytics_data import listed_ids, post_events, sample_events


@pytest.fixture
async def tenants(client: ApiClient) -> tuple[TenantFixture, TenantFixture, list[str], list[str]]:
    a, b = await make_tenant(client), await make_tenant(client)
    ids_a = await post_events(client, a, sample_events(60))
    ids_b = await post_events(client, b, sample_events(10))
    return a, b, ids_a, ids_b


def _rows(fmt: str, body: bytes) -> list[dict[str, Any]]:
    if fmt == "json":
        rows: list[dict[str, Any]] = json.loads(body)
        return rows
    if fmt == "ndjson":
        return [json.loads(line) for line in body.decode().splitlines() if line]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    return pq.read_table(io.BytesIO(body)).to_pylist()


def _as_api(fmt: str, row: dict[str, Any]) -> dict[str, Any]:
    """An exported row in the shape of ``GET /logs/{id}`` (JSON text parsed, times as the API's text)."""
    out = dict(row)
    for key in ("metadata", "before_state", "after_state"):
        if fmt in ("csv", "parquet") and out[key] not in (None, ""):
            out[key] = json.loads(out[key])
    if fmt == "csv":
        out = {k: (None if v == "" else v) for k, v in out.items()}
    if fmt == "parquet":
        for key in ("timestamp", "received_at"):
            ts: datetime = out[key]
            out[key] = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if ts.microsecond else "") + "Z")
    return out


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "parquet"])
async def test_every_format_round_trips_every_field(client: ApiClient, tenants: Any, fmt: str) -> None:
    a, _b, ids_a, ids_b = tenants
    response = await client.get("/api/v1/logs/export", params={"format": fmt}, headers=a.auditor)
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'.{fmt}"')
    if fmt == "csv":
        header = next(csv.reader(io.StringIO(response.content.decode())))
        assert header[:4] == ["id", "tenant_id", "action", "resource_type"]
    rows = [_as_api(fmt, r) for r in _rows(fmt, response.content)]
    assert [r["id"] for r in rows] == ids_a  # each event once, in commit order; none of tenant B's
    assert not set(ids_b) & {r["id"] for r in rows}
    for row in rows:
        shown = (await client.get(f"/api/v1/logs/{row['id']}", headers=a.auditor)).json()
        assert list(row) == list(shown)
        assert row == shown
    assert any(r["metadata"] for r in rows) and any(r["after_state"] for r in rows)
    assert all("hunter2" not in json.dumps(r) and "alice0@example.com" not in json.dumps(r) for r in rows)


_FILTERS: list[dict[str, Any]] = [
    {"severity": ["ERROR", "CRITICAL"]},
    {"action": ["CREATE", "DELETE"], "resource_type": "document"},
    {"user_id": "user-3"},
    {"resource_id": "r-2"},
    {"session_id": "s-0"},
    {"request_id": "req-3"},
    {"ip_address": "10.0.0.3"},
    {"q": "invoice"},
    {"q": '"second line" -report'},
    {"exclude_action": "LOGIN", "exclude_resource_type": ["user"]},
    {"include_system": "true"},
    {"resource_type": "audit_log"},
]


async def test_every_filter_selects_what_get_logs_lists(client: ApiClient, tenants: Any) -> None:
    a = tenants[0]
    now = datetime.now(UTC)
    windows = [
        {"start_time": (now - timedelta(days=5)).isoformat(), "end_time": (now - timedelta(days=1)).isoformat()},
        {"start_time": (now - timedelta(days=3)).isoformat()},
        {"end_time": (now - timedelta(days=10)).isoformat()},
    ]
    for unbounded in [*_FILTERS, *windows, {**_FILTERS[0], **windows[0]}]:
        # the reads below are audited (records stamped now, written in the background): an end bound taken
        # after the earlier reads' records are flushed keeps the list and the export on the same events
        await client.app.state.runtime.services["read_audit"].flush()
        params = {"end_time": datetime.now(UTC).isoformat(), **unbounded}
        expected = await listed_ids(client, a.admin, params)
        response = await client.get("/api/v1/logs/export", params={**params, "format": "ndjson"}, headers=a.admin)
        assert response.status_code == 200, (params, response.text)
        exported = [r["id"] for r in _rows("ndjson", response.content)]
        assert len(exported) == len(set(exported))
        assert sorted(exported) == sorted(expected), params


async def test_export_is_audited_and_refuses_unknown_formats(client: ApiClient, tenants: Any) -> None:
    a = tenants[0]
    for params in ({"format": "xml"}, {}, {"format": "csv", "severity": "LOUD"}):
        bad = await client.get("/api/v1/logs/export", params=params, headers=a.auditor)
        assert bad.status_code == 422, bad.text
    ok = await client.get("/api/v1/logs/export", params={"format": "csv", "user_id": "user-1"}, headers=a.auditor)
    assert ok.status_code == 200
    await client.app.state.runtime.services["read_audit"].flush()
    listed = await client.get(
        "/api/v1/logs", params={"resource_type": "audit_log", "action": "EXPORT"}, headers=a.admin
    )
    records = listed.json()["items"]
    assert len(records) == 1
    assert records[0]["metadata"]["format"] == "csv"
    assert records[0]["metadata"]["count"] == 12
    assert records[0]["metadata"]["filters"]["user_id"] == ["user-1"]
