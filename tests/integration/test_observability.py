"""Logs an operator can use: one JSON access line per request with its request id, the request id on the
lines a failing request logs, router-level 404/405 answers that carry ``X-Request-ID``, and a setting that
turns the access log off."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import get

from app.web.observability import JsonFormatter
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app


class JsonLines:
    """Every record reaching the root logger, formatted by the service's own formatter."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "auditlog.access"]


@pytest.fixture
async def app_client(database: Database, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    overrides = getattr(request, "param", {})
    settings = make_settings(database, tmp_path, log_level="INFO", log_json=True, **overrides)
    async with running_app(settings) as client:
        yield client


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    """Attached after the app configured logging (``create_app`` replaces the root's handlers)."""
    captured = JsonLines()
    root = logging.getLogger()
    root.addHandler(captured.handler)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)


async def test_access_line_is_json_with_request_id_tenant_and_timing(app_client: ApiClient, logs: JsonLines) -> None:
    tenant = await make_tenant(app_client)
    response = await app_client.get(
        "/api/v1/logs", params={"limit": 1}, headers={**tenant.admin, "X-Request-ID": "trace-abc.1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-abc.1"
    [line] = [entry for entry in logs.access() if entry.get("request_id") == "trace-abc.1"]
    assert line["level"] == "info"
    assert line["method"] == "GET" and line["path"] == "/api/v1/logs" and line["status"] == 200
    assert line["tenant_id"] == tenant.id
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    assert line["ts"].endswith("Z")


async def test_every_request_gets_its_own_generated_id(app_client: ApiClient, logs: JsonLines) -> None:
    first = await app_client.get("/healthz", headers={"X-Request-ID": "not a sane id!"})
    second = await app_client.get("/healthz")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert len(set(ids)) == 2 and "not a sane id!" not in ids
    assert [line["request_id"] for line in logs.access()] == ids


async def test_router_level_404_and_405_carry_the_request_id(app_client: ApiClient, logs: JsonLines) -> None:
    missing = await app_client.get("/no/such/route", headers={"X-Request-ID": "rid-404"})
    wrong_method = await app_client.delete("/healthz", headers={"X-Request-ID": "rid-405"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "rid-404"
    assert missing.json()["request_id"] == "rid-404"
    assert wrong_method.status_code == 405 and wrong_method.headers["x-request-id"] == "rid-405"
    statuses = {line["request_id"]: line["status"] for line in logs.access()}
    assert statuses == {"rid-404": 404, "rid-405": 405}


@get("/test-only/boom", opt={"public": True}, include_in_schema=False)
async def _boom() -> None:
    logging.getLogger("tests.boom").info("about to fail")
    raise RuntimeError("boom for the test")


async def test_a_500s_request_id_is_on_every_line_it_logged(app_client: ApiClient, logs: JsonLines) -> None:
    # A route of the test's own, registered on this app instance only: production code has no way to fail.
    app_client.app.register(_boom)
    response = await app_client.get("/test-only/boom", headers={"X-Request-ID": "failing-request-7"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "failing-request-7"
    assert response.json()["request_id"] == "failing-request-7"
    assert "boom for the test" not in response.text
    mine = [line for line in logs.lines() if line.get("request_id") == "failing-request-7"]
    by_logger = {line["logger"]: line for line in mine}
    assert by_logger["tests.boom"]["msg"] == "about to fail"
    error = by_logger["auditlog.errors"]
    assert error["level"] == "error" and "RuntimeError: boom for the test" in error["exc"]
    assert by_logger["auditlog.access"]["status"] == 500


@pytest.mark.parametrize("app_client", [{"access_log": False}], indirect=True)
async def test_access_log_can_be_turned_off(app_client: ApiClient, logs: JsonLines) -> None:
    response = await app_client.get("/healthz", headers={"X-Request-ID": "quiet-1"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "quiet-1"
    assert logs.access() == []
