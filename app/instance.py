"""One ``auditlog serve`` per data directory and per listening address, for the life of the process.

A second ``serve`` on the same data directory would share the first one's embedded PostgreSQL and, before
these checks, stopped it on exit; Granian binds its port with ``SO_REUSEPORT``, so a second server on the
same port silently shared the listener. ``claim_instance`` refuses both with a clear message:

- an exclusive ``flock`` on ``<data_dir>/serve.lock`` (released by the kernel when the process dies, so a
  crash never leaves a stale lock behind);
- the address: an abstract Unix socket named after it (exclusive between ``auditlog serve`` processes, also
  gone with the process, so no window while Granian's workers start) and a probe bind without
  ``SO_REUSEPORT``, which fails when anything already listens there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Instance", "InstanceConflict", "claim_instance"]


class InstanceConflict(RuntimeError):
    """Another server already uses this data directory or address."""


@dataclass
class Instance:
    """What this process holds while it serves; the kernel releases it when the process ends."""

    lock_fd: int
    address_guard: socket.socket | None

    def release(self) -> None:
        if self.address_guard is not None:
            self.address_guard.close()
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def _lock_data_dir(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InstanceConflict(
            f"another auditlog serve (pid {holder}) is already running on the data directory {data_dir}; "
            "stop it first, or give this one its own AUDIT_DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _guard_address(host: str, port: int) -> socket.socket | None:
    guard: socket.socket | None = None
    if sys.platform.startswith("linux"):
        guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            guard.bind(f"\0auditlog-serve:{host}:{port}")
        except OSError as exc:
            guard.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            raise InstanceConflict(f"another auditlog serve is already listening on {host}:{port}") from None
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no conflict
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if guard is not None:
                guard.close()
            raise InstanceConflict(
                f"cannot listen on {host}:{port}: {exc.strerror} (is another server on it?)"
            ) from None
    return guard


def claim_instance(data_dir: Path, host: str, port: int) -> Instance:
    """Hold ``data_dir`` and ``host:port`` for this process, or raise ``InstanceConflict`` saying who has them."""
    fd = _lock_data_dir(data_dir)
    try:
        guard = _guard_address(host, port)
    except BaseException:
        os.close(fd)
        raise
    return Instance(lock_fd=fd, address_guard=guard)
