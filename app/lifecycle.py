"""Start and stop the optional parts of an API process: the in-process job worker and the like.

Each part registers itself in ``runtime.services`` so that shutdown stops exactly what was started.
"""

from __future__ import annotations

import contextlib
import logging

from app.read_audit import start_read_audit
from app.runtime import Runtime

__all__ = ["start_services", "stop_services"]

log = logging.getLogger(__name__)


async def start_services(runtime: Runtime) -> None:
    from app.logs.ingest import IngestWriter
    from db.urls import plain_dsn

    assert runtime.settings.database_url
    writer = IngestWriter(
        plain_dsn(runtime.settings.database_url),
        runtime.db,
        runtime.keyrings,
        max_connections=max(2, runtime.settings.db_pool_size // 2),
    )
    await writer.start()
    runtime.services["ingest"] = writer
    runtime.services["read_audit"] = await start_read_audit(runtime)
    from app.api_keys.service import KeyUsageFlusher
    from app.ratelimit import build_rate_limiter

    runtime.services["ratelimit"] = build_rate_limiter(runtime.settings)
    runtime.services["api_key_usage"] = KeyUsageFlusher(runtime).start()
    if runtime.settings.worker_in_process:
        from jobs.worker import start_worker

        runtime.services["worker"] = await start_worker(runtime.settings)


async def stop_services(runtime: Runtime) -> None:
    for name, service in reversed(list(runtime.services.items())):
        stop = getattr(service, "stop", None) or getattr(service, "close", None)
        if stop is None:
            continue
        with contextlib.suppress(Exception):
            await stop()
        log.info("stopped %s", name)
