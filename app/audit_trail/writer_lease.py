"""The ingest writer a job-worker plugin records events through: the API's own when the worker runs in the
API process, else a small one the plugin starts for itself and stops on its shutdown.

A lease has ``services`` like a runtime, so ``record_service_event`` (and what calls it) takes it as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.logs.ingest import IngestWriter

__all__ = ["WriterLease"]


@dataclass
class WriterLease:
    dsn: str
    """Where an own writer connects (the API role)."""
    host: Any = None
    """Something with ``services["ingest"]`` (the API's runtime, in-process) whose writer to use."""
    services: dict[str, Any] = field(default_factory=dict)
    """``{"ingest": writer}`` once started."""
    owned: IngestWriter | None = None
    """The writer started for the plugin; ``None`` while the host's is used."""

    async def start(self, ctx: dict[str, Any]) -> IngestWriter:
        """The host's writer, or one started on the worker's ``db`` and ``keyrings``."""
        writer = self.host.services.get("ingest") if self.host is not None else None
        if writer is None:
            writer = self.owned = IngestWriter(self.dsn, ctx["db"], ctx["keyrings"], max_connections=2)
            await writer.start()
        self.services["ingest"] = writer
        return writer

    async def stop(self) -> None:
        """Stop the writer started for the plugin (the host's stays the host's)."""
        if self.owned is not None:
            await self.owned.stop()
            self.owned = None
