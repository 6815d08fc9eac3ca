"""The retention part of the job worker: each scheduled purge is recorded as an administrative event.

``jobs.retention.apply_retention`` calls ``ctx["record_purge"]`` when it is there; this plugin puts it there,
with a small ingest writer of its own (the worker may run in its own process, with no API around it), so a
scheduled retention leaves the same ``EVENTS_PURGED`` trace as ``DELETE /logs/cleanup``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from app.logs.ingest import IngestWriter
from app.retention.service import record_purge
from db.urls import plain_dsn
from jobs.retention import PurgeResult

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.settings import Settings

__all__ = ["RETENTION_ACTOR", "RetentionPlugin", "retention_plugin"]

RETENTION_ACTOR = "system:retention"


@dataclass
class _Services:
    """What ``record_service_event`` reads of a runtime: its ingest writer."""

    services: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetentionPlugin:
    dsn: str
    host: Any = None
    """Something with ``services["ingest"]`` (the API's runtime, in-process) whose writer to use; else one is
    started."""
    functions: Sequence[Callable[..., Any]] = ()
    _writer: IngestWriter | None = None

    async def startup(self, ctx: dict[str, Any]) -> None:
        writer = self.host.services.get("ingest") if self.host is not None else None
        if writer is None:
            writer = self._writer = IngestWriter(self.dsn, ctx["db"], ctx["keyrings"], max_connections=2)
            await writer.start()
        holder = cast("Runtime", _Services({"ingest": writer}))

        async def record(tenant_id: uuid.UUID, result: PurgeResult) -> None:
            await record_purge(holder, result, actor=RETENTION_ACTOR, trigger="retention")

        ctx["record_purge"] = record

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        ctx.pop("record_purge", None)
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None


def retention_plugin(settings: Settings, host: Any = None) -> RetentionPlugin:
    return RetentionPlugin(plain_dsn(settings.database_url or ""), host)
