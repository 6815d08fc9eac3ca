"""Per-tenant data keys: created with the tenant, rotated on demand, unwrapped once and cached.

New writes use the newest key that is not retired; older keys stay readable, so rotation needs no
downtime and no re-encryption of old events.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import MasterKey, TenantKeyring, new_data_key, unwrap_data_key, wrap_data_key

__all__ = ["KeyringStore"]


class KeyringStore:
    def __init__(self, master: MasterKey) -> None:
        self.master = master
        self._cache: dict[uuid.UUID, TenantKeyring] = {}

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

    async def get(self, session: AsyncSession, tenant_id: uuid.UUID) -> TenantKeyring:
        """The tenant's keyring (session must be bound to ``tenant_id``)."""
        ring = self._cache.get(tenant_id)
        if ring is not None:
            return ring
        rows = (
            await session.execute(
                text("SELECT key_id, wrapped_key, retired_at FROM tenant_keys WHERE tenant_id = :t ORDER BY key_id"),
                {"t": tenant_id},
            )
        ).all()
        if not rows:
            raise LookupError(f"tenant {tenant_id} has no data key")
        keys = {r.key_id: unwrap_data_key(self.master, tenant_id, r.key_id, bytes(r.wrapped_key)) for r in rows}
        active_id = (
            max(r.key_id for r in rows if r.retired_at is None)
            if any(r.retired_at is None for r in rows)
            else max(keys)
        )
        ring = TenantKeyring(tenant_id, keys[active_id], keys)
        self._cache[tenant_id] = ring
        return ring

    def forget(self, tenant_id: uuid.UUID) -> None:
        self._cache.pop(tenant_id, None)
