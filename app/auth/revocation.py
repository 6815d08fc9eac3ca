"""Revoked sessions and API keys, known to every API process within a second.

Revoking writes ``revoked_at`` in PostgreSQL and sends ``NOTIFY auditlog_revoked`` in the same
transaction. Each process keeps a set of revoked ids in memory, fed by a ``LISTEN`` connection (and a
periodic catch-up query in case a notification is missed while reconnecting), so checking a token or key
on the hot path costs a set look-up, not a database round trip.

A revocation is remembered for ``remember_seconds`` (at least, counted from when this process learnt of it):
longer than an access token can be accepted and longer than the authenticator trusts a cached API key
(:func:`remember_seconds`). After that the registry may forget it safely: the token has expired, and a key
is read again from the database, where ``revoked_at`` is for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

__all__ = ["CHANNEL", "JWT_LEEWAY_SECONDS", "MARGIN_SECONDS", "RevocationRegistry", "remember_seconds"]

log = logging.getLogger(__name__)
CHANNEL = "auditlog_revoked"
JWT_LEEWAY_SECONDS = 5
"""The clock leeway ``TokenService`` grants on ``exp``."""
MARGIN_SECONDS = 60.0
"""Added to every horizon: clock differences between processes, a slow catch-up."""
POLL_SECONDS = 5.0


def remember_seconds(*, access_token_ttl: float, api_key_cache: float) -> float:
    """How long a revocation must be remembered so that nothing revoked can be accepted again."""
    return max(access_token_ttl + JWT_LEEWAY_SECONDS, api_key_cache) + MARGIN_SECONDS


class RevocationRegistry:
    def __init__(self, dsn: str, *, remember_seconds: float, poll_seconds: float | None = None) -> None:
        self._dsn = dsn
        self._horizon = remember_seconds
        self._poll = POLL_SECONDS if poll_seconds is None else poll_seconds
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
        cutoff = time.monotonic() - self._horizon
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
