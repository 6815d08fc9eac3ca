"""Only the process that owns the embedded PostgreSQL stops it, and never while another process uses it.

Locks are ``flock``s on open files, so two ``EmbeddedPostgres`` objects in one test behave as two processes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.embedded import EmbeddedPostgres


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="auditlog-owner-"))  # outside pytest's tmp_path, see test_embedded
    try:
        yield root / "data"
    finally:
        EmbeddedPostgres(root / "data").halt()
        shutil.rmtree(root, ignore_errors=True)


def test_a_user_never_stops_the_server_and_the_owner_waits_for_its_users(data_dir: Path) -> None:
    owner = EmbeddedPostgres(data_dir)
    owner.start()
    assert owner.started_here
    user = EmbeddedPostgres(data_dir)
    user.start()
    assert not user.started_here, "a live owner holds the server"
    pid = owner.pid

    owner.release()  # another process still uses it: left running
    assert EmbeddedPostgres(data_dir).pid == pid

    user.release()  # a user that did not start it never stops it
    assert EmbeddedPostgres(data_dir).pid == pid

    heir = EmbeddedPostgres(data_dir)  # the owner is gone: the next one adopts the server and owns it
    heir.start()
    assert heir.started_here and heir.pid == pid
    heir.release()
    assert EmbeddedPostgres(data_dir).pid is None
