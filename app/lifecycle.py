"""Start and stop the long-running parts of an API process: the ingest writer, the read-audit recorder,
the live-stream hub, the rate limiter, the API-key usage flusher and (embedded default) the job worker.

Each part registers itself in ``runtime.services`` so that shutdown stops exactly what was started.
"""

from __future__ import annotations

import contextlib
import logging

from app.api_keys.service import KeyUsageFlusher
from app.demo_data import DemoSeeding, start_demo_seeding
from app.logs.ingest import IngestWriter
from app.read_audit import start_read_audit
from app.runtime import Runtime
from app.stream.hub import StreamHub
from app.web.ratelimit import build_rate_limiter
from db.urls import plain_dsn

__all__ = ["start_services", "stop_services"]

log = logging.getLogger(__name__)


async def start_services(runtime: Runtime) -> None:
    settings = runtime.settings
    writer = IngestWriter(
        plain_dsn(settings.database_url or ""),
        runtime.db,
        runtime.keyrings,
        max_connections=max(2, settings.db_pool_size // 2),
    )
    await writer.start()
    runtime.services["ingest"] = writer
    runtime.services["read_audit"] = await start_read_audit(runtime)
    runtime.services["stream"] = await StreamHub(
        plain_dsn(settings.database_url or ""), runtime.db, runtime.keyrings, window=settings.stream_buffer_events
    ).start()
    runtime.services["ratelimit"] = build_rate_limiter(settings)
    runtime.services["api_key_usage"] = KeyUsageFlusher(runtime).start()
    if (demo := start_demo_seeding(runtime)) is not None:  # development: sample tenants' events, once
        runtime.services["demo_data"] = DemoSeeding(demo)
    if settings.worker_in_process:
        from app.worker_plugins import worker_plugins
        from jobs.worker import start_worker  # only when the worker runs in this process

        plugins = worker_plugins(settings, runtime)
        runtime.services["worker"] = await start_worker(settings.jobs_config(), plugins=plugins)


async def stop_services(runtime: Runtime) -> None:
    for name, service in reversed(list(runtime.services.items())):
        stop = getattr(service, "stop", None) or getattr(service, "close", None)
        if stop is None:
            continue
        with contextlib.suppress(Exception):
            await stop()
        log.info("stopped %s", name)
