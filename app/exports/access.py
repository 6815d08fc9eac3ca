"""What the analytics routes and the export job share: the process's engine and lake store, and the
streamed bytes of one export."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from analytics.engine import AnalyticsEngine
from analytics.export_formats import Encoder, projection
from analytics.lake_seam import lake_module
from analytics.tenant import open_tenant_events

if TYPE_CHECKING:
    from app.logs.query import LogFilters
    from app.runtime import Runtime
    from db.keyring import KeyringStore

__all__ = ["EXPORT_TIME_LIMIT_S", "ExportProgress", "engine_of", "export_bytes", "lake_store", "lake_store_of"]

EXPORT_TIME_LIMIT_S: Final = 6 * 3600.0
"""The longest one export may run (the engine interrupts it past this)."""


def engine_of(runtime: Runtime) -> AnalyticsEngine:
    """The process's analytics engine (made on first use)."""
    engine = runtime.services.get("analytics")
    if engine is None:
        engine = runtime.services["analytics"] = AnalyticsEngine()
    assert isinstance(engine, AnalyticsEngine)
    return engine


def lake_store(lake_url: str, endpoint_url: str | None) -> Any:
    """The lake's ``LakeStore`` (``None`` while the lake module is absent)."""
    lake = lake_module()
    return None if lake is None else lake.LakeStore.from_url(lake_url, endpoint_url=endpoint_url)


def lake_store_of(runtime: Runtime) -> Any:
    store = runtime.services.get("lake_store")
    if store is None:
        store = lake_store(runtime.settings.lake_location, runtime.settings.s3_endpoint_url)
        runtime.services["lake_store"] = store
    return store


@dataclass
class ExportProgress:
    rows: int = 0
    bytes: int = 0
    complete: bool = False


async def export_bytes(
    pg: asyncpg.Connection,
    tenant_id: uuid.UUID,
    keyrings: KeyringStore,
    engine: AnalyticsEngine,
    store: Any,
    *,
    filters: LogFilters,
    fmt: str,
    progress: ExportProgress,
    batch_rows: int = 65_536,
) -> AsyncIterator[bytes]:
    """The export's bytes, chunk by chunk (``pg``: a connection of the caller's, bound to no transaction); a chunk
    holds about ``batch_rows`` rows (a Parquet chunk is a row group of ``batch_rows`` rows)."""
    encoder = Encoder(fmt, row_group_rows=batch_rows)
    async with open_tenant_events(engine, pg, tenant_id, keyrings, filters=filters, lake_store=store) as session:
        schema = None
        for chunk in (encoder.start(),):
            progress.bytes += len(chunk)
            yield chunk
        async for batch in session.stream(
            projection(fmt, tenant_id), batch_rows=batch_rows, time_limit=EXPORT_TIME_LIMIT_S
        ):
            schema = batch.schema
            chunk = encoder.batch(batch)
            progress.rows = encoder.rows
            if chunk:
                progress.bytes += len(chunk)
                yield chunk
        chunk = encoder.finish(schema)
        progress.bytes += len(chunk)
        progress.complete = True
        yield chunk
