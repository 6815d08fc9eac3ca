"""Open a tenant's ``events`` in the engine: one PostgreSQL snapshot, the lake as listed in it, the keyring.

The one entry point the routes and jobs use, so every reader gets the same guarantee: the lake files and
watermark and the hot tail (``seq`` above that watermark) are read in one ``REPEATABLE READ`` snapshot,
so an event is counted once, whether or not the lake job commits in the meantime.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg

from analytics.engine import AnalyticsEngine, EngineSession
from analytics.lake_seam import read_lake_snapshot
from analytics.schema import SENSITIVE_COLUMNS
from analytics.tail import snapshot

if TYPE_CHECKING:
    from db.event_filters import LogFilters
    from db.keyring import KeyringStore

__all__ = ["open_tenant_events"]


@contextlib.asynccontextmanager
async def open_tenant_events(
    engine: AnalyticsEngine,
    pg: asyncpg.Connection,
    tenant_id: uuid.UUID,
    keyrings: KeyringStore,
    *,
    filters: LogFilters,
    columns: tuple[str, ...] | None = None,
    lake_store: Any = None,
) -> AsyncIterator[EngineSession]:
    """An engine session over ``tenant_id``'s events (``pg``: a connection the caller owns, not in a
    transaction)."""
    async with snapshot(pg, tenant_id):
        lake = await read_lake_snapshot(pg, tenant_id, lake_store)
        from analytics.filters import filter_columns

        needed = set(columns or SENSITIVE_COLUMNS) | filter_columns(filters)
        keyring = await keyrings.get(pg, tenant_id) if needed & set(SENSITIVE_COLUMNS) else None
        async with engine.session(
            pg, tenant_id, keyring=keyring, lake=lake, filters=filters, columns=columns
        ) as session:
            yield session
