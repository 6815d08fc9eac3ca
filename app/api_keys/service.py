"""API keys in the database, and the background flush of their ``last_used_at``.

A key is ``alk_<public id>_<secret>``; only its SHA-256 is stored, next to the public id the authenticator
looks it up by. Revoking sets ``revoked_at`` and sends ``NOTIFY auditlog_revoked`` in the same transaction,
so every process refuses the key within a second. The authenticator records uses in memory
(``key_uses``); ``KeyUsageFlusher`` writes them to ``last_used_at`` every few seconds, one tenant-bound
transaction per tenant, so the hot path never writes to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import ApiKeyCreated, ApiKeyOut
from app.auth.revocation import CHANNEL
from app.auth.tokens import new_api_key
from app.runtime import Runtime
from db.models import ApiKey
from db.repository import ApiKeyRepository

__all__ = ["FLUSH_SECONDS", "KeyUsageFlusher", "create_key", "list_keys", "revoke_key"]

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0


async def create_key(session: AsyncSession, *, name: str, role: str, created_by: uuid.UUID) -> ApiKeyCreated:
    """A new key in the session's tenant; the secret is returned here once and only its hash is stored."""
    for _ in range(5):  # public ids are random (~47 bits): a collision is rare, but keep them global
        key, public_id, digest = new_api_key()
        taken = (await session.execute(text("SELECT 1 FROM auditlog_find_api_key(:p)"), {"p": public_id})).first()
        if taken is None:
            break
    else:  # pragma: no cover
        raise RuntimeError("could not allocate an API key id")
    stored = await ApiKeyRepository(session=session).add(
        ApiKey(id=uuid.uuid4(), public_id=public_id, name=name, role=role, key_hash=digest, created_by=created_by)
    )
    return ApiKeyCreated(id=stored.id, name=name, role=role, key=key, created_at=stored.created_at)


async def list_keys(session: AsyncSession) -> list[ApiKeyOut]:
    rows = await ApiKeyRepository(session=session).list(order_by=[(ApiKey.created_at, False), (ApiKey.id, False)])
    return [
        ApiKeyOut(
            id=r.id,
            name=r.name,
            role=r.role,
            created_at=r.created_at,
            last_used_at=r.last_used_at,
            revoked_at=r.revoked_at,
        )
        for r in rows
    ]


async def revoke_key(runtime: Runtime, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    """Revoke a key of ``tenant_id``; False if the tenant has no such key. Idempotent."""
    async with runtime.db.tenant(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                    " WHERE tenant_id = :t AND id = :id RETURNING id"
                ),
                {"t": tenant_id, "id": key_id},
            )
        ).first()
        if row is None:
            return False
        await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": f"api_key:{key_id}"})
    runtime.revocations.mark(key_id)
    return True


class KeyUsageFlusher:
    """Writes ``authenticator.key_uses`` to ``api_keys.last_used_at`` every ``interval`` seconds."""

    def __init__(self, runtime: Runtime, interval: float = FLUSH_SECONDS) -> None:
        self.runtime = runtime
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> KeyUsageFlusher:
        self._task = asyncio.create_task(self._run(), name="api-key-usage-flush")
        return self

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.warning("could not record API key use", exc_info=True)

    async def flush(self) -> int:
        """Write the uses recorded so far; returns how many keys were updated."""
        authenticator = self.runtime.authenticator
        uses, authenticator.key_uses = authenticator.key_uses, {}
        by_tenant: dict[uuid.UUID, list[dict[str, object]]] = defaultdict(list)
        for (tenant_id, key_id), at in uses.items():
            by_tenant[tenant_id].append({"id": key_id, "at": datetime.fromtimestamp(at, UTC)})
        for tenant_id, params in by_tenant.items():
            async with self.runtime.db.tenant(tenant_id) as session:
                await session.execute(
                    text(
                        "UPDATE api_keys SET last_used_at = :at WHERE id = :id"
                        " AND (last_used_at IS NULL OR last_used_at < :at)"
                        # a use that raced a revocation (another process, before its NOTIFY) is not recorded
                        " AND (revoked_at IS NULL OR revoked_at >= :at)"
                    ),
                    params,
                )
        return len(uses)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
