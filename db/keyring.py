"""Per-tenant data keys: created with the tenant, rotated on demand, unwrapped once and cached.

New writes use the newest key that is not retired; older keys stay readable, so rotation needs no
downtime and no re-encryption of old events.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import MasterKey, TenantKeyring, new_data_key, unwrap_data_key, wrap_data_key

__all__ = ["KeyringStore"]

_KEYS_SQL = "SELECT key_id, wrapped_key, retired_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY key_id"
CACHE_SECONDS = 60.0
"""How long a process keeps a tenant's keyring: after a rotation made elsewhere, every process writes
with the new key within this time (events written meanwhile with the old key stay readable)."""


class KeyringStore:
    def __init__(self, master: MasterKey, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.master = master
        self.cache_seconds = cache_seconds
        self._cache: dict[uuid.UUID, tuple[TenantKeyring, float]] = {}

    async def create_first_key(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        """Called in the transaction that creates the tenant (tenant already set on the session)."""
        await self._insert_key(session, tenant_id, 1)

    async def rotate(self, session: AsyncSession, tenant_id: uuid.UUID) -> int:
        current = (
            await session.execute(
                text("SELECT coalesce(max(key_id), 0) FROM tenant_keys WHERE tenant_id = :t"), {"t": tenant_id}
            )
        ).scalar_one()
        new_id = int(current) + 1
        await self._insert_key(session, tenant_id, new_id)
        self._cache.pop(tenant_id, None)
        return new_id

    async def _insert_key(self, session: AsyncSession, tenant_id: uuid.UUID, key_id: int) -> None:
        data_key = new_data_key(key_id)
        await session.execute(
            text("INSERT INTO tenant_keys (tenant_id, key_id, wrapped_key, master_key_id) VALUES (:t, :k, :w, :m)"),
            {
                "t": tenant_id,
                "k": key_id,
                "w": wrap_data_key(self.master, tenant_id, data_key),
                "m": self.master.key_id,
            },
        )

    async def get(self, conn: AsyncSession | asyncpg.Connection, tenant_id: uuid.UUID) -> TenantKeyring:
        """The tenant's keyring, from the cache or loaded through ``conn`` (bound to ``tenant_id``)."""
        ring = self.cached(tenant_id)
        if ring is not None:
            return ring
        if isinstance(conn, AsyncSession):
            rows = (await conn.execute(text(_KEYS_SQL.replace("$1", ":t")), {"t": tenant_id})).all()
        else:
            rows = await conn.fetch(_KEYS_SQL, tenant_id)
        if not rows:
            raise LookupError(f"tenant {tenant_id} has no data key")
        keys = {r[0]: unwrap_data_key(self.master, tenant_id, r[0], bytes(r[1])) for r in rows}
        live = [r[0] for r in rows if r[2] is None]
        ring = TenantKeyring(tenant_id, keys[max(live) if live else max(keys)], keys)
        self._cache[tenant_id] = (ring, time.monotonic() + self.cache_seconds)
        return ring

    def cached(self, tenant_id: uuid.UUID) -> TenantKeyring | None:
        entry = self._cache.get(tenant_id)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def forget(self, tenant_id: uuid.UUID) -> None:
        self._cache.pop(tenant_id, None)
