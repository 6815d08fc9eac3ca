"""Helpers for tests that run the service as a real process: a free port, waiting until it is ready, and
``auditlog serve`` itself on a test database (one way to start and stop it, for every module that needs it).

Ports come from a range of each pytest-xdist worker's own, below the kernel's ephemeral range: two workers
never draw from the same range, and no outgoing connection (which takes its local port from the ephemeral
range) can take a port between :func:`free_port` choosing it and the server binding it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import OPERATOR_PASSWORD

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = [
    "Server",
    "free_port",
    "serve_env",
    "serving",
    "start_granian",
    "start_serve",
    "stop_serve",
    "wait_ready",
]

PORT_BASE = 20_000
"""Ports 20000-31999: below Linux's default ephemeral range (32768-60999)."""
PORTS_PER_WORKER = 1_000
WORKER_SLOTS = 12


def _port_range() -> range:
    """This process's ports: xdist worker ``gwN`` gets slot N (mod 12); a run without workers gets slot 0."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    slot = int(match.group(1)) % WORKER_SLOTS if match else 0
    start = PORT_BASE + slot * PORTS_PER_WORKER
    return range(start, start + PORTS_PER_WORKER)


def free_port() -> int:
    """A port of this worker's range nobody listens on now (tried at random; any port in the end)."""
    candidates = _port_range()
    for port in random.sample(candidates, 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the whole range busy (other runs on the machine): let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    """Poll ``/readyz`` until it answers 200; fail with the process log if it exits or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready in {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    """A running ``auditlog serve`` process on 127.0.0.1."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        """Wait until it is ready (see :func:`wait_ready`); kill it if it never gets there."""
        try:
            wait_ready(self.proc, self.port, self.log)
        except BaseException:
            _kill(self.proc)
            raise


def serve_env(api_url: str, owner_url: str, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a test ``auditlog serve``: this process's minus every ``AUDIT_`` variable, then the
    test keys, the operator password of the fixtures, no demo data, no in-process worker, rate limits out of
    the way; ``extra`` (``AUDIT_...=value``) adds or overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(
        AUDIT_ENV="test",
        AUDIT_DATABASE_URL=api_url,
        AUDIT_MIGRATION_DATABASE_URL=owner_url,
        AUDIT_DATA_DIR=str(data_dir),
        AUDIT_PORT=str(port),
        AUDIT_MASTER_KEY=base64.urlsafe_b64encode(b"m" * 32).decode(),
        AUDIT_JWT_SIGNING_KEYS="test1:" + "s" * 48,
        AUDIT_OPERATOR_PASSWORD=OPERATOR_PASSWORD,
        AUDIT_DEMO_DATA="false",
        AUDIT_RUN_WORKER_IN_PROCESS="false",
        AUDIT_LOG_LEVEL="WARNING",
        AUDIT_RATE_LIMIT_LOG_ROUTES="1000000",
        AUDIT_RATE_LIMIT_OTHER_ROUTES="1000000",
    )
    env.update(extra)
    return env


def start_serve(
    api_url: str, owner_url: str, workdir: Path, name: str = "serve", *, wait: bool = True, **extra: str
) -> Server:
    """Start ``auditlog serve`` on a free port over the database the two URLs name (API role, owner role),
    with its data dir ``workdir/name`` and its output in ``workdir/name.log``; return once it is ready
    (``wait=False``: at once, to start several side by side and then call ``Server.wait_ready`` on each)."""
    port = free_port()
    log = workdir / f"{name}.log"
    env = serve_env(api_url, owner_url, workdir / name, port, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(port, proc, log)
    if wait:
        server.wait_ready()
    return server


def start_granian(settings: Settings, log: Path, *, wait: bool = True, **extra: str) -> Server:
    """The app alone under Granian (one worker, no ``serve``: no migrations, no bootstrap) on a free port, with
    the database, keys, operator password and data dir of ``settings`` (a test's, already bootstrapped), no
    in-process worker, rate limits out of the way; ``extra`` (``AUDIT_...=value``) adds or overrides."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(
        AUDIT_ENV="test",
        AUDIT_DATABASE_URL=str(settings.database_url),
        AUDIT_MASTER_KEY=str(settings.master_key),
        AUDIT_JWT_SIGNING_KEYS=str(settings.jwt_signing_keys),
        AUDIT_OPERATOR_PASSWORD=str(settings.operator_password),
        AUDIT_DATA_DIR=str(settings.data_dir),
        AUDIT_DEMO_DATA="false",
        AUDIT_RUN_WORKER_IN_PROCESS="false",
        AUDIT_LOG_LEVEL="WARNING",
        AUDIT_RATE_LIMIT_LOG_ROUTES="10000000",
        AUDIT_RATE_LIMIT_OTHER_ROUTES="10000000",
    )
    env.update(extra)
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "app.asgi:create_app_from_env"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(port, proc, log)
    if wait:
        server.wait_ready()
    return server


def stop_serve(server: Server, timeout: float = 30) -> None:
    """Ctrl-C the server and wait for it; kill its whole process group if it does not stop in ``timeout``."""
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(server.proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextlib.contextmanager
def serving(api_url: str, owner_url: str, workdir: Path, name: str = "serve", **extra: str) -> Iterator[Server]:
    """:func:`start_serve` for the length of a ``with`` block, stopped at its end whatever happens."""
    server = start_serve(api_url, owner_url, workdir, name, **extra)
    try:
        yield server
    finally:
        stop_serve(server)
