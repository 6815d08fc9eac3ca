"""The tenant boundary in the database: every transaction the API opens is bound to one tenant.

``TenantDB`` is the only way application code reaches PostgreSQL. ``tenant(tid)`` opens a transaction and
sets ``auditlog.tenant_id`` for it (``set_config(..., true)``, so it ends with the transaction and never
leaks to the next user of a pooled connection); row-level security then hides every other tenant's rows.
``system()`` opens one with no tenant: it sees no tenant rows at all and is used only to call the
``SECURITY DEFINER`` look-ups that run before a tenant is known (login, API keys).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["SET_TENANT_SQL", "TenantDB"]

SET_TENANT_SQL = "SELECT set_config('auditlog.tenant_id', $1, true)"
_SET_TENANT = text("SELECT set_config('auditlog.tenant_id', :tid, true)")


class TenantDB:
    """Tenant-bound transactions over the API role's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @contextlib.asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A session in one transaction that can only see and write ``tenant_id``'s rows."""
        async with self._sessions() as session, session.begin():
            await session.execute(_SET_TENANT, {"tid": str(tenant_id)})
            session.info["tenant_id"] = tenant_id
            yield session

    @contextlib.asynccontextmanager
    async def tenant_connection(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncConnection]:
        """Like ``tenant`` but a Core connection (for COPY and hand-written hot-path SQL)."""
        async with self.engine.begin() as conn:
            await conn.execute(_SET_TENANT, {"tid": str(tenant_id)})
            yield conn

    @contextlib.asynccontextmanager
    async def system(self) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant: tenant tables look empty; definer look-ups only."""
        async with self._sessions() as session, session.begin():
            yield session
