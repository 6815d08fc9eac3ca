"""The job worker's side of administrative events: data keys rotated by the schedule (or ``auditlog
rotate-keys``) are recorded in the tenant's log, with the service as the actor.

``jobs`` imports nothing of ``app``: ``jobs.tasks.rotate_data_keys`` calls ``ctx[ON_DATA_KEY_ROTATED]`` after
each rotation commits, and this plugin puts it there. Inside the API process it records through the API's
own ingest writer; in ``auditlog worker`` or the CLI it starts a small writer of its own and stops it on
shutdown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.audit_trail.service_events import DATA_KEY, SERVICE_ACTOR, record_service_event
from app.audit_trail.writer_lease import WriterLease
from app.settings import Settings
from db.urls import plain_dsn
from jobs.tasks import ON_DATA_KEY_ROTATED

__all__ = ["ServiceEventsPlugin", "service_events_plugin"]


@dataclass
class ServiceEventsPlugin:
    """A ``jobs.worker.WorkerPlugin`` with no tasks of its own: it records what the job tasks report."""

    writer: WriterLease
    functions: Sequence[Callable[..., Any]] = ()

    async def startup(self, ctx: dict[str, Any]) -> None:
        await self.writer.start(ctx)
        ctx[ON_DATA_KEY_ROTATED] = self.data_key_rotated

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        ctx.pop(ON_DATA_KEY_ROTATED, None)
        await self.writer.stop()

    async def data_key_rotated(self, tenant_id: uuid.UUID, key_id: int, trigger: str) -> None:
        await record_service_event(
            self.writer,
            tenant_id=tenant_id,
            actor=SERVICE_ACTOR,
            action="DATA_KEY_ROTATED",
            resource_type=DATA_KEY,
            resource_id=str(key_id),
            details={"key_id": key_id, "trigger": trigger},
            message=f"data key rotated to key {key_id} ({trigger})",
        )


def service_events_plugin(settings: Settings, host: Any = None) -> ServiceEventsPlugin:
    """The plugin for a worker configured from the API's settings (``host``: the API runtime, in-process)."""
    return ServiceEventsPlugin(WriterLease(plain_dsn(settings.database_url or ""), host))
