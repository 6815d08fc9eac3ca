"""Integrating committed events into each tenant's Merkle tree, in the job worker.

The worker listens to ``auditlog_events`` (the write path's commit notifications: ``<tenant>:<max seq>``)
and, ``interval`` seconds after a tenant's first new event, integrates everything past its tree's size and
signs a checkpoint (:func:`app.verifiable.service.integrate`, one transaction). A notice that arrives while
a round runs asks for one more round (its event may have committed after the round read the table), so the
last events of a burst do not wait for the sweep. A sweep every
``sweep_seconds`` covers notifications missed while reconnecting (``auditlog_merkle_pending()``). A round
that filled its batch goes again at once. Several workers are safe: the tree row lock serialises them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.logs.ingest import NOTIFY_CHANNEL
from app.settings import Settings
from app.verifiable.keys import CheckpointKeys, checkpoint_keys
from app.verifiable.service import DEFAULT_BATCH, Integrated, integrate
from db.listener import listen_forever
from db.urls import plain_dsn

__all__ = ["Integrator", "VerifiableLogPlugin", "integrate_tenant", "verifiable_log_plugin"]

log = logging.getLogger(__name__)


async def _raw(session: AsyncSession) -> asyncpg.Connection:
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


async def integrate_tenant(
    db: Any, tenant_id: uuid.UUID, keys: CheckpointKeys, *, batch: int = DEFAULT_BATCH
) -> Integrated:
    """One integration round of one tenant in its own tenant-bound transaction (``db``: a ``TenantDB``)."""
    async with db.tenant(tenant_id) as session:
        return await integrate(await _raw(session), tenant_id, keys, batch=batch)


class Integrator:
    def __init__(
        self, db: Any, dsn: str, keys: CheckpointKeys, *, interval: float = 0.5, sweep_seconds: float = 5.0
    ) -> None:
        self._db = db
        self._dsn = dsn
        self._keys = keys
        self._interval = interval
        self._sweep = sweep_seconds
        self._due: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._again: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.integrated = 0

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.poke(uuid.UUID(payload.partition(":")[0]))

    def poke(self, tenant_id: uuid.UUID) -> None:
        task = self._due.get(tenant_id)
        if task is None or task.done():
            self._due[tenant_id] = asyncio.create_task(self._later(tenant_id), name=f"merkle-{tenant_id}")
        else:
            self._again.add(tenant_id)

    async def _later(self, tenant_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # a notice from now on may be of an event this round does not see: it asks for another round
            self._again.discard(tenant_id)
            try:
                while True:
                    done = await integrate_tenant(self._db, tenant_id, self._keys)
                    self.integrated += done.new_size - done.old_size
                    if done.new_size - done.old_size < DEFAULT_BATCH:
                        break
            except Exception:
                log.exception("integrating the events of tenant %s into its tree failed", tenant_id)
            if tenant_id not in self._again:
                return

    async def _sweeper(self) -> None:
        while True:
            try:
                async with self._db.system() as session:
                    tenants = await (await _raw(session)).fetch("SELECT * FROM auditlog_merkle_pending()")
                for row in tenants:
                    self.poke(row[0])
            except Exception:
                log.exception("verifiable-log sweep failed")
            await asyncio.sleep(self._sweep)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                listen_forever(self._dsn, NOTIFY_CHANNEL, self._on_notify, name="merkle listener"),
                name="merkle-listener",
            ),
            asyncio.create_task(self._sweeper(), name="merkle-sweeper"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._due.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class VerifiableLogPlugin:
    """What the job worker runs for the verifiable log: the integrator (no queued tasks)."""

    functions: Sequence[Callable[..., Any]] = ()

    def __init__(self, dsn: str, keys: CheckpointKeys, *, interval: float) -> None:
        self._dsn = dsn
        self._keys = keys
        self._interval = interval

    async def startup(self, ctx: dict[str, Any]) -> None:
        integrator = Integrator(ctx["db"], self._dsn, self._keys, interval=self._interval)
        integrator.start()
        ctx["merkle_integrator"] = integrator

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        integrator = ctx.pop("merkle_integrator", None)
        if integrator is not None:
            await integrator.stop()


class _Disabled:
    """Stands in when no signing key is configured: the rest of the worker runs; nothing is integrated."""

    functions: Sequence[Callable[..., Any]] = ()

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def startup(self, ctx: dict[str, Any]) -> None:
        log.error("verifiable log disabled: %s (set AUDIT_CHECKPOINT_SIGNING_KEYS)", self.reason)

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        return None


def verifiable_log_plugin(settings: Settings) -> VerifiableLogPlugin | _Disabled:
    try:
        keys = checkpoint_keys(settings)
    except ValueError as exc:
        return _Disabled(str(exc))
    return VerifiableLogPlugin(
        plain_dsn(settings.database_url or ""), keys, interval=settings.checkpoint_interval_seconds
    )
