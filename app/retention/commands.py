"""``auditlog export-lake`` and ``auditlog apply-retention``: the scheduled lake and retention jobs, run now.

Both build the same context the worker gives its tasks; ``apply-retention`` also starts an ingest writer,
so that every purge is recorded as an administrative event of its tenant like the API's cleanups are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db.crypto import LocalMasterKey
from db.keyring import KeyringStore
from db.tenancy import TenantDB
from db.urls import plain_dsn
from jobs.lake import export_lake, lake_context
from jobs.retention import PurgeResult, apply_retention

if TYPE_CHECKING:
    import uuid

    from app.runtime import Runtime
    from app.settings import Settings

__all__ = ["export_lake_now", "run_apply_retention", "run_export_lake"]


async def run_export_lake(settings: Settings) -> dict[str, int]:
    from app.runtime import make_engine

    engine = make_engine(settings)
    try:
        ctx: dict[str, Any] = {
            "db": TenantDB(engine),
            "keyrings": KeyringStore(LocalMasterKey.from_setting(settings.master_key or "")),
        }
        lake_context(ctx, settings.jobs_config())
        return await export_lake(ctx, wait=True)
    finally:
        await engine.dispose()


async def run_apply_retention(settings: Settings) -> dict[str, int]:
    from app.logs.ingest import IngestWriter
    from app.retention.plugin import RETENTION_ACTOR
    from app.retention.service import record_purge
    from app.runtime import build_runtime

    runtime = await build_runtime(settings)
    writer = IngestWriter(plain_dsn(settings.database_url or ""), runtime.db, runtime.keyrings, max_connections=2)
    await writer.start()
    runtime.services["ingest"] = writer

    async def record(tenant_id: uuid.UUID, result: PurgeResult) -> None:
        await record_purge(runtime, result, actor=RETENTION_ACTOR, trigger="retention")

    try:
        ctx: dict[str, Any] = {"db": runtime.db, "keyrings": runtime.keyrings, "record_purge": record}
        lake_context(ctx, settings.jobs_config())
        return await apply_retention(ctx)
    finally:
        await writer.stop()
        await runtime.close()


async def export_lake_now(runtime: Runtime) -> dict[str, int]:
    """The lake export of every tenant, from inside an API process (demo seeding)."""
    ctx: dict[str, Any] = {"db": runtime.db, "keyrings": runtime.keyrings}
    lake_context(ctx, runtime.settings.jobs_config())
    return await export_lake(ctx, wait=True)
