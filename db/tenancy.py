"""The tenant boundary in the database: every transaction the API opens is bound to one tenant.

``TenantDB`` is the only way application code reaches PostgreSQL, and ``bind_session``/``bind_tenant``/
``TenantDB.read`` the only places a connection is bound to a tenant; row-level security then hides every other
tenant's rows.

- ``tenant(tid)`` (an SQLAlchemy session) opens a transaction with ``auditlog.tenant_id`` set for it
  (``set_config(..., true)``, so it ends with the transaction and never leaks to the next user of a pooled
  connection). Every write goes this way (or through the ingest writer's own connections, bound the same way).
- ``read(tid)`` (the read hot paths) hands out a connection of the separate *read pool*: its sessions are
  read-only (``default_transaction_read_only``), and the tenant is bound at session level and remembered per
  connection, so a read is one statement in one round trip and rebinding costs a round trip only when the
  connection last served another tenant. The pool does not reset sessions on release (no ``RESET ALL``:
  that would cost a round trip and drop the binding). Every read statement also carries an explicit
  ``tenant_id = $1``, so a binding that were ever stale could only hide rows, never show another tenant's.
- ``system()`` opens a transaction with no tenant: it sees no tenant rows at all and is used only to call the
  ``SECURITY DEFINER`` look-ups that run before a tenant is known (login, API keys).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["ReadConnection", "TenantDB", "bind_session", "bind_tenant", "create_read_pool"]

_SET_TENANT = text("SELECT set_config('auditlog.tenant_id', :tid, true)")
_SET_SESSION_TENANT = "SELECT set_config('auditlog.tenant_id', $1, false)"
READ_POOL_SETTINGS = {"default_transaction_read_only": "on"}


class ReadConnection(asyncpg.Connection):
    """A read-pool connection that remembers the tenant its session is bound to (``None``: unknown/unbound).

    Methods rather than an attribute: the pool hands out a proxy that forwards calls, not attribute writes.
    """

    _bound_tenant: uuid.UUID | None = None

    def bound_tenant(self) -> uuid.UUID | None:
        return self._bound_tenant

    def remember_tenant(self, tenant_id: uuid.UUID | None) -> None:
        self._bound_tenant = tenant_id


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The read pool's reset on release: nothing beyond asyncpg's own (which rolls back an open transaction)."""


async def create_read_pool(
    dsn: str, *, max_size: int, statement_timeout_ms: int = 30_000, application_name: str = "auditlog-api-read"
) -> asyncpg.Pool:
    """The pool behind ``TenantDB.read``: read-only sessions that keep their tenant binding between uses, each
    statement cancelled by PostgreSQL after ``statement_timeout_ms`` (``57014``, answered ``503`` by the API)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=0,  # connect lazily: the API starts even while the database is still coming up
        max_size=max_size,
        server_settings={
            "application_name": application_name,
            "statement_timeout": str(statement_timeout_ms),
            **READ_POOL_SETTINGS,
        },
        connection_class=ReadConnection,
        reset=_keep_session,
    )


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
    async def read(self, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """A read-only connection of the read pool whose session is bound to ``tenant_id``.

        Each statement is its own (read-only) transaction; use ``bind_tenant(conn, tid, readonly=True)`` on it
        for a snapshot shared by several statements.
        """
        if self.pool is None:
            raise RuntimeError("TenantDB was built without an asyncpg read pool")
        if not isinstance(tenant_id, uuid.UUID):
            raise TypeError("tenant_id must be a uuid.UUID")
        async with self.pool.acquire() as conn:
            if not isinstance(conn, ReadConnection):
                raise TypeError("the read pool must be created with connection_class=ReadConnection")
            if conn.bound_tenant() != tenant_id:
                conn.remember_tenant(None)  # unknown until the binding is confirmed
                await conn.execute(_SET_SESSION_TENANT, str(tenant_id))
                conn.remember_tenant(tenant_id)
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
