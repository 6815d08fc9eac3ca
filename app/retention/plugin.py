"""The retention part of the job worker: each scheduled purge is recorded as an administrative event.

``jobs.retention.apply_retention`` calls ``ctx["record_purge"]`` when it is there; this plugin puts it there,
with a small ingest writer of its own (the worker may run in its own process, with no API around it), so a
scheduled retention leaves the same ``EVENTS_PURGED`` trace as ``DELETE /logs/cleanup``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from app.audit_trail.writer_lease import WriterLease
from app.retention.service import record_purge
from db.urls import plain_dsn
from jobs.retention import PurgeResult

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.settings import Settings

__all__ = ["RETENTION_ACTOR", "RetentionPlugin", "retention_plugin"]

RETENTION_ACTOR = "system:retention"


@dataclass
class RetentionPlugin:
    writer: WriterLease
    functions: Sequence[Callable[..., Any]] = ()

    async def startup(self, ctx: dict[str, Any]) -> None:
        await self.writer.start(ctx)
        holder = cast("Runtime", self.writer)

        async def record(tenant_id: uuid.UUID, result: PurgeResult) -> None:
            await record_purge(holder, result, actor=RETENTION_ACTOR, trigger="retention")

        ctx["record_purge"] = record

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        ctx.pop("record_purge", None)
        await self.writer.stop()


def retention_plugin(settings: Settings, host: Any = None) -> RetentionPlugin:
    return RetentionPlugin(WriterLease(plain_dsn(settings.database_url or ""), host))
