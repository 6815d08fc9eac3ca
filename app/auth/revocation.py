"""Revoked sessions and API keys, known to every API process within a second.

Revoking writes ``revoked_at`` in PostgreSQL and sends ``NOTIFY auditlog_revoked`` in the same
transaction. Each process keeps a set of revoked ids in memory, fed by a ``LISTEN`` connection (and a
periodic catch-up query in case a notification is missed while reconnecting), so checking a token or key
on the hot path costs a set look-up, not a database round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

__all__ = ["CHANNEL", "RevocationRegistry"]

log = logging.getLogger(__name__)
CHANNEL = "auditlog_revoked"


class RevocationRegistry:
    def __init__(self, dsn: str, *, horizon_seconds: int, poll_seconds: float = 5.0) -> None:
        self._dsn = dsn
        self._horizon = horizon_seconds
        self._poll = poll_seconds
        self._revoked: dict[uuid.UUID, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._listener_ready = asyncio.Event()

    def is_revoked(self, ident: uuid.UUID | None) -> bool:
        return ident is not None and ident in self._revoked

    def mark(self, ident: uuid.UUID) -> None:
        """Record a revocation this process made itself (no need to wait for the notification)."""
        self._revoked[ident] = time.monotonic()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.mark(uuid.UUID(payload.partition(":")[2] or payload))

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        since = datetime.now(UTC) - timedelta(seconds=self._horizon)
        for row in await conn.fetch("SELECT id FROM auditlog_recent_revocations($1)", since):
            self._revoked.setdefault(row["id"], time.monotonic())
        cutoff = time.monotonic() - self._horizon - 60
        for ident, seen in list(self._revoked.items()):
            if seen < cutoff:
                del self._revoked[ident]

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                await self._catch_up(conn)
                self._listener_ready.set()
                while True:
                    await asyncio.sleep(self._poll)
                    await self._catch_up(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect on any connection failure
                log.warning("revocation listener reconnecting: %s", exc)
                await asyncio.sleep(1)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener_ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
