"""Build and run the SAQ worker: the functions it knows and the schedules it keeps.

``auditlog worker`` runs it as its own process; with the embedded default it runs inside the API
process (``start_worker``), so one command gives the whole product.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from saq import CronJob, Worker

from db.crypto import LocalMasterKey
from db.engine import make_engine
from db.keyring import KeyringStore
from db.tenancy import TenantDB
from jobs.config import JobsConfig
from jobs.idempotency import purge_idempotency_keys
from jobs.queue import make_queue
from jobs.tasks import precreate_partitions, rotate_data_keys

__all__ = ["FUNCTIONS", "InProcessWorker", "build_worker", "run_worker", "start_worker"]

FUNCTIONS = [precreate_partitions, purge_idempotency_keys, rotate_data_keys]
CRON_JOBS: list[CronJob[Any]] = [
    CronJob(precreate_partitions, cron="17 * * * *", timeout=300),
    CronJob(purge_idempotency_keys, cron="*/15 * * * *", timeout=300),
    CronJob(rotate_data_keys, cron="41 3 * * *", timeout=600),
]


def build_worker(config: JobsConfig, *, handle_signals: bool = True) -> Worker:
    queue = make_queue(config)
    engine = make_engine(
        config.database_url,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        application_name="auditlog-jobs",
    )

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["db"] = TenantDB(engine)
        ctx["keyrings"] = KeyringStore(LocalMasterKey.from_setting(config.master_key))

    async def shutdown(ctx: dict[str, Any]) -> None:
        await engine.dispose()

    worker: Worker[Any] = Worker(
        queue,
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
        startup=startup,
        shutdown=shutdown,
        concurrency=4,
        shutdown_grace_period_s=2,
    )
    if not handle_signals:
        worker.SIGNALS = []  # the host process (Granian) owns the signals
    return worker


class InProcessWorker:
    """A worker running as a task of the API process's event loop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        await self.worker.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.worker.queue.disconnect()


async def start_worker(config: JobsConfig) -> InProcessWorker:
    worker = build_worker(config, handle_signals=False)
    await worker.queue.connect()
    handle = InProcessWorker(worker)
    handle.task = asyncio.create_task(worker.start(), name="saq-worker")
    return handle


def run_worker(config: JobsConfig) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""

    async def main() -> None:
        worker = build_worker(config)
        await worker.queue.connect()
        try:
            await worker.start()
        finally:
            await worker.queue.disconnect()

    asyncio.run(main())
