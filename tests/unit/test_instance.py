"""``claim_instance``: one serve per data directory and per listening address."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from app.instance import InstanceConflict, claim_instance
from tests.servers import free_port


def test_a_second_claim_on_the_data_dir_is_refused_until_released(tmp_path: Path) -> None:
    first = claim_instance(tmp_path, "127.0.0.1", free_port())
    try:
        with pytest.raises(InstanceConflict, match=f"already running on the data directory {tmp_path}"):
            claim_instance(tmp_path, "127.0.0.1", free_port())
    finally:
        first.release()
    claim_instance(tmp_path, "127.0.0.1", free_port()).release()


def test_a_second_claim_on_the_address_is_refused(tmp_path: Path) -> None:
    port = free_port()
    first = claim_instance(tmp_path / "a", "127.0.0.1", port)
    try:
        with pytest.raises(InstanceConflict, match=f"already listening on 127.0.0.1:{port}"):
            claim_instance(tmp_path / "b", "127.0.0.1", port)
    finally:
        first.release()


def test_a_port_shared_through_so_reuseport_is_refused(tmp_path: Path) -> None:
    """Granian listens with SO_REUSEPORT, so another Granian could share its port: the probe binds without it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(InstanceConflict, match=f"cannot listen on 127.0.0.1:{port}"):
            claim_instance(tmp_path, "127.0.0.1", port)
    claim_instance(tmp_path, "127.0.0.1", port).release()  # the lock was let go on failure
