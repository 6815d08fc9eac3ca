"""The tenant boundary in the database: every transaction the API opens is bound to one tenant.

``TenantDB`` is the only way application code reaches PostgreSQL, and ``bind_session``/``bind_tenant`` the only
places a transaction is bound to a tenant. ``tenant(tid)`` (an SQLAlchemy session) and ``raw(tid)`` (an asyncpg
connection, for the hot paths) open a transaction with ``auditlog.tenant_id`` set for it
(``set_config(..., true)``, so it ends with the transaction and never leaks to the next user of a pooled
connection); row-level security then hides every other tenant's rows. ``system()`` opens one with no
tenant: it sees no tenant rows at all and is used only to call the ``SECURITY DEFINER`` look-ups that run
before a tenant is known (login, API keys).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["TenantDB", "bind_session", "bind_tenant"]

_SET_TENANT = text("SELECT set_config('auditlog.tenant_id', :tid, true)")


@contextlib.asynccontextmanager
async def bind_tenant(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on an asyncpg connection bound to ``tenant_id`` (BEGIN and the tenant in one round trip).

    The tenant id must be a ``uuid.UUID`` (hex digits and dashes only), so inlining it in the simple
    query is safe; the simple-query protocol is what lets BEGIN and the binding share one round trip.
    """
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("tenant_id must be a uuid.UUID")
    mode = " READ ONLY" if readonly else ""
    await conn.execute(f"BEGIN{mode}; SELECT set_config('auditlog.tenant_id', '{tenant_id}', true)")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


async def bind_session(session: AsyncSession, tenant_id: uuid.UUID) -> AsyncSession:
    """Bind the session's current transaction to ``tenant_id`` (and record it for tenant repositories)."""
    await session.execute(_SET_TENANT, {"tid": str(tenant_id)})
    session.info["tenant_id"] = tenant_id
    return session


class TenantDB:
    """Tenant-bound transactions over the API role's engine (and its raw asyncpg pool)."""

    def __init__(self, engine: AsyncEngine, pool: asyncpg.Pool | None = None) -> None:
        self.engine = engine
        self.pool = pool
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @contextlib.asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A session in one transaction that can only see and write ``tenant_id``'s rows."""
        async with self._sessions() as session, session.begin():
            yield await bind_session(session, tenant_id)

    @contextlib.asynccontextmanager
    async def raw(self, tenant_id: uuid.UUID, *, readonly: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """An asyncpg connection in a transaction bound to ``tenant_id`` (the read hot path)."""
        if self.pool is None:
            raise RuntimeError("TenantDB was built without an asyncpg pool")
        async with self.pool.acquire() as conn, bind_tenant(conn, tenant_id, readonly=readonly):
            yield conn

    @contextlib.asynccontextmanager
    async def system(self) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant: tenant tables look empty; definer look-ups only."""
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.engine.dispose()
