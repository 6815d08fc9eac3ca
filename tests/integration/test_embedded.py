"""``auditlog serve`` on the embedded PostgreSQL: starts, restarts after a crash, stops with the process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from db.embedded import EmbeddedPostgres
from tests.servers import free_port, wait_ready


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The service's data dir, outside pytest's ``tmp_path``: pytest resets its base to 0700 whenever any session
    starts, which would lock the embedded server's own user out of its cluster."""
    root = Path(tempfile.mkdtemp(prefix="auditlog-serve-"))
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> int | None:
    return EmbeddedPostgres(data_dir).pid


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(AUDIT_DATA_DIR=str(data_dir), AUDIT_PORT=str(port), AUDIT_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _crash(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_embedded_server_starts_restarts_and_stops(data_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    port = free_port()

    first = _start(data_dir, port, log)
    try:
        wait_ready(first, port, log)
        assert (data_dir / "demo-credentials.txt").exists()
        assert "demo credentials in" in log.read_text()
        assert "password" not in log.read_text().split("demo credentials in")[0].lower().replace(
            "operator password: audit_operator_password", ""
        )
        pg_pid = _postmaster_pid(data_dir)
        assert pg_pid is not None
    finally:
        _crash(first)

    # The API died without stopping PostgreSQL: the next serve adopts the running server.
    assert _postmaster_pid(data_dir) == pg_pid
    second = _start(data_dir, port, log)
    try:
        wait_ready(second, port, log)
    finally:
        _stop(second)
    assert second.returncode is not None
    assert _postmaster_pid(data_dir) is None, "PostgreSQL must stop with the serve process"

    # A crash that also killed PostgreSQL leaves a stale postmaster.pid behind; serve still starts.
    third = _start(data_dir, port, log)
    try:
        wait_ready(third, port, log)
        stale = _postmaster_pid(data_dir)
        assert stale is not None
        os.kill(stale, signal.SIGKILL)
    finally:
        _crash(third)
    time.sleep(0.5)
    assert (data_dir / "pg" / "postmaster.pid").exists()
    fourth = _start(data_dir, port, log)
    try:
        wait_ready(fourth, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        _stop(fourth)
    assert _postmaster_pid(data_dir) is None
