"""A real ``auditlog serve`` process: every line it prints from start-up to shutdown is one JSON object
(its own lines, alembic's, Granian's, the lifecycle's, the in-process SAQ worker's), requests get access
lines with their request id, ``--port`` is honoured, the start-up line names the operator password that
applies, and the shutdown is clean (no SAQ warning about unfinished tasks). ``./run --port`` reaches
``serve`` the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_PASSWORD, Database
from tests.servers import free_port, wait_ready

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _env(database: Database, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_") and k != "VIRTUAL_ENV"}
    env.update(
        AUDIT_ENV="test",
        AUDIT_DATABASE_URL=database.api_url,
        AUDIT_MIGRATION_DATABASE_URL=database.owner_url,  # so alembic logs through serve's configuration
        AUDIT_DATA_DIR=str(data_dir),
        AUDIT_OPERATOR_PASSWORD=OPERATOR_PASSWORD,  # differs from the one generated into secrets.json
        AUDIT_RUN_WORKER_IN_PROCESS="true",
        AUDIT_DEMO_DATA="false",
        AUDIT_LOG_LEVEL="INFO",
        AUDIT_PORT="1",  # only --port can make the server reachable
    )
    return env


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C as a terminal sends it: to the whole process group."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _json_lines(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(entry, dict) and {"ts", "level", "logger", "msg"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


def test_serve_logs_only_json_from_start_to_a_clean_shutdown(database: Database, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=_env(database, tmp_path / "data"),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        wait_ready(proc, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/healthz", headers={"X-Request-ID": "serve-test-1"}).status_code == 200
            missing = http.get("/no-such-page", headers={"X-Request-ID": "serve-test-2"})
            assert missing.status_code == 404 and missing.headers["x-request-id"] == "serve-test-2"
    finally:
        _interrupt(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]

    entries = _json_lines(log)
    loggers = {entry["logger"] for entry in entries}
    assert {"auditlog.cli", "alembic.runtime.migration", "_granian", "app.lifecycle", "auditlog.access"} <= loggers
    messages = [entry["msg"] for entry in entries]
    assert f"serving http://127.0.0.1:{port} on the configured database" in messages
    [operator_line] = [m for m in messages if m.startswith("operator password")]
    assert "AUDIT_OPERATOR_PASSWORD" in operator_line and "secrets.json" not in operator_line
    access = {entry["request_id"]: entry for entry in entries if entry["logger"] == "auditlog.access"}
    assert access["serve-test-1"]["status"] == 200 and access["serve-test-1"]["path"] == "/healthz"
    assert access["serve-test-2"]["status"] == 404
    assert "stopped worker" in messages  # the in-process SAQ worker ran and was stopped
    assert not [e for e in entries if e["level"] in ("warning", "error", "critical")], [
        e for e in entries if e["level"] != "info"
    ]


def test_run_script_passes_port_to_serve(database: Database, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "run.log"
    proc = subprocess.Popen(
        [str(ROOT / "run"), "--port", str(port)],
        env=_env(database, tmp_path / "data"),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,  # ./run finds its own directory
    )
    try:
        wait_ready(proc, port, log)
    finally:
        _interrupt(proc)
    assert "unrecognized arguments" not in log.read_text()
