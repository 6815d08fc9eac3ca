"""``auditlog serve`` on the embedded PostgreSQL: starts, restarts after a crash, stops with the process."""

from __future__ import annotations

import contextlib
import json
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

pytestmark = pytest.mark.slow


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
    env.update(AUDIT_DATA_DIR=str(data_dir), AUDIT_PORT=str(port), AUDIT_LOG_LEVEL="INFO")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _operator_password(data_dir: Path) -> str:
    return str(json.loads((data_dir / "secrets.json").read_text())["operator_password"])


def _login(port: int, password: str) -> httpx.Response:
    body = {"tenant": "platform", "username": "operator", "password": password}
    return httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/token", json=body, timeout=30)


def _demo_admin_headers(port: int, data_dir: Path) -> dict[str, str]:
    for line in (data_dir / "demo-credentials.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[1] == "admin":
            body = {"tenant": fields[0], "username": "admin", "password": fields[3]}
            token = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/token", json=body, timeout=30)
            assert token.status_code == 200, token.text
            return {"Authorization": f"Bearer {token.json()['access_token']}"}
    raise AssertionError("no demo admin in demo-credentials.txt")


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
        demo = [line.split("\t")[-1] for line in (data_dir / "demo-credentials.txt").read_text().splitlines()]
        for secret in [_operator_password(data_dir), *(p for p in demo if p)]:
            assert secret not in log.read_text()
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


def test_second_serve_on_the_same_data_dir_or_port_is_refused(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    first = _start(data_dir, port, tmp_path / "first.log")
    try:
        wait_ready(first, port, tmp_path / "first.log")
        pg_pid = _postmaster_pid(data_dir)
        assert pg_pid is not None

        second_log = tmp_path / "second.log"
        second = _start(data_dir, free_port(), second_log)
        assert second.wait(timeout=60) != 0, second_log.read_text()
        assert f"already running on the data directory {data_dir}" in second_log.read_text()

        third_log = tmp_path / "third.log"  # data of its own, the first one's port
        third = _start(data_dir.parent / "other", port, third_log)
        assert third.wait(timeout=60) != 0, third_log.read_text()
        assert f"already listening on 127.0.0.1:{port}" in third_log.read_text()

        # The first keeps serving on its own PostgreSQL, which nobody stopped.
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert _login(port, _operator_password(data_dir)).status_code == 200
        assert _postmaster_pid(data_dir) == pg_pid
    finally:
        _stop(first)
    assert _postmaster_pid(data_dir) is None, "the owner stops its PostgreSQL on exit"


def test_database_outage_answers_503_then_recovers(data_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    port = free_port()
    proc = _start(data_dir, port, log)
    try:
        wait_ready(proc, port, log)
        password = _operator_password(data_dir)
        token = _login(port, password)
        assert token.status_code == 200, token.text
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        tenants = f"http://127.0.0.1:{port}/api/v1/tenants"
        assert httpx.get(tenants, headers=auth, timeout=30).status_code == 200
        reader = _demo_admin_headers(port, data_dir)  # GET /logs reads through the raw asyncpg read pool
        logs = f"http://127.0.0.1:{port}/api/v1/logs"
        assert httpx.get(logs, headers=reader, timeout=30).status_code == 200

        database = EmbeddedPostgres(data_dir)
        database.halt()  # the database goes away under the running API
        try:
            outage = (
                _login(port, password),
                httpx.get(tenants, headers=auth, timeout=30),
                httpx.get(logs, headers=reader, timeout=30),
            )
            for response in outage:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert int(response.headers["retry-after"]) > 0
                assert response.json()["status"] == 503
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 503
        finally:
            database.launch()

        deadline = time.monotonic() + 30
        while (status := _login(port, password).status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == 200
        assert httpx.get(tenants, headers=auth, timeout=30).status_code == 200
        assert httpx.get(logs, headers=reader, timeout=30).status_code == 200
    finally:
        _stop(proc)
    assert _postmaster_pid(data_dir) is None
