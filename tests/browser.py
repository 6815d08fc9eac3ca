"""What the browser tests need: Debian's Chromium (installed by ``scripts/chromium.sh`` into ``.tools/`` when
the machine has none), a real ``auditlog serve`` process, and a folder for screenshots.

The browser is Python Playwright driving that Chromium through ``executable_path`` (Playwright's own browser
download is never used). When no Chromium can be had, the tests skip and say why.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from db.provision import API_ROLE, OWNER_ROLE
from tests.conftest import OPERATOR_PASSWORD, PgServer
from tests.servers import free_port, wait_ready

__all__ = ["CHROMIUM_ARGS", "Server", "artifacts_dir", "chromium_executable", "start_server", "stop_server"]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    """The Chromium to drive, installing it first if needed; skips the calling test when none can be had."""
    try:
        done = subprocess.run(
            ["sh", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no Chromium for the browser tests: scripts/chromium.sh could not run ({exc})")
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path:
        pytest.skip(f"no Chromium for the browser tests: {done.stderr.strip()[-500:] or 'scripts/chromium.sh failed'}")
    return path


def artifacts_dir() -> Path:
    """Where screenshots go: ``$AUDIT_TEST_ARTIFACTS`` or ``tests/artifacts`` (ignored by git)."""
    path = Path(os.environ.get("AUDIT_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_server(pg: PgServer, dbname: str, data_dir: Path, **extra: str) -> Server:
    """``auditlog serve`` on a free port over database ``dbname``, with the job worker in the process."""
    port = free_port()
    log = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(
        AUDIT_ENV="test",
        AUDIT_DATABASE_URL=pg.url(API_ROLE, dbname),
        AUDIT_MIGRATION_DATABASE_URL=pg.url(OWNER_ROLE, dbname),
        AUDIT_DATA_DIR=str(data_dir / "data"),
        AUDIT_PORT=str(port),
        AUDIT_MASTER_KEY=base64.urlsafe_b64encode(b"m" * 32).decode(),
        AUDIT_JWT_SIGNING_KEYS="test1:" + "s" * 48,
        AUDIT_OPERATOR_PASSWORD=OPERATOR_PASSWORD,
        AUDIT_CHECKPOINT_SIGNING_KEYS=(
            "PRIVATE+KEY+auditlog.example+77eac839+AWNjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
        ),
        AUDIT_CHECKPOINT_INTERVAL_SECONDS="0.2",
        AUDIT_DEMO_DATA="false",
        AUDIT_RUN_WORKER_IN_PROCESS="true",
        AUDIT_LOG_LEVEL="WARNING",
        AUDIT_RATE_LIMIT_LOG_ROUTES="1000000",
        AUDIT_RATE_LIMIT_OTHER_ROUTES="1000000",
        **extra,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(proc, port, log)
    return Server(port, proc, log)


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
