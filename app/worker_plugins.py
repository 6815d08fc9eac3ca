"""Everything the API adds to the job worker, in one list: the worker runs the same tasks whether it lives in
the API process (the embedded default) or in ``auditlog worker``.

``jobs`` knows only its own maintenance tasks; each capability that needs the API's code hands its tasks and
background loops in as a ``jobs.worker.WorkerPlugin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.alerts.evaluator import alerts_plugin
from app.audit_trail.jobs_plugin import service_events_plugin
from app.export_schedules.scheduler import export_schedules_plugin
from app.exports.job import ExportJobsPlugin
from app.retention.plugin import retention_plugin
from app.settings import Settings
from app.verifiable.integrator import verifiable_log_plugin

if TYPE_CHECKING:
    from jobs.worker import WorkerPlugin

__all__ = ["worker_plugins"]


def worker_plugins(settings: Settings, host: Any = None) -> list[WorkerPlugin]:
    """The plugins; ``host`` is the API's runtime when the worker runs inside the API process (its ingest
    writer is then shared), ``None`` in ``auditlog worker``."""
    return [
        alerts_plugin(settings),
        service_events_plugin(settings, host),
        retention_plugin(settings, host),
        verifiable_log_plugin(settings),
        ExportJobsPlugin(),
        export_schedules_plugin(settings, host),
    ]
