"""Build and run the SAQ worker: the functions it knows and the schedules it keeps.

``auditlog worker`` runs it as its own process; with the embedded default it runs inside the API
process (``start_worker``), so one command gives the whole product.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from saq import CronJob, Worker

from db.crypto import LocalMasterKey
from db.engine import make_engine
from db.keyring import KeyringStore
from db.tenancy import TenantDB
from jobs.config import JobsConfig
from jobs.idempotency import purge_idempotency_keys
from jobs.lake import LAKE_FUNCTIONS, lake_context, lake_cron_jobs
from jobs.queue import make_queue
from jobs.search_reindex import reindex_search
from jobs.tasks import precreate_partitions, rotate_data_keys

__all__ = [
    "FUNCTIONS",
    "GracefulWorker",
    "InProcessWorker",
    "WorkerPlugin",
    "build_worker",
    "run_worker",
    "start_worker",
]

log = logging.getLogger(__name__)


class WorkerPlugin(Protocol):
    """Tasks a caller adds to the worker, with what they need started beside them (e.g. the alert evaluator).

    The caller (the API process or ``auditlog worker``) hands plugins in, so ``jobs`` imports nothing of ``app``.
    """

    functions: Sequence[Callable[..., Any]]

    async def startup(self, ctx: dict[str, Any]) -> None: ...

    async def shutdown(self, ctx: dict[str, Any]) -> None: ...


FUNCTIONS = [precreate_partitions, purge_idempotency_keys, rotate_data_keys, reindex_search, *LAKE_FUNCTIONS]
CRON_JOBS: list[CronJob[Any]] = [
    CronJob(precreate_partitions, cron="17 * * * *", timeout=300),
    CronJob(purge_idempotency_keys, cron="*/15 * * * *", timeout=300),
    CronJob(rotate_data_keys, cron="41 3 * * *", timeout=600),
    CronJob(reindex_search, cron="* * * * *", timeout=120),  # a no-op once old rows are re-indexed (0014)
]


class GracefulWorker(Worker[Any]):
    """A SAQ worker whose stop waits only for jobs actually running.

    SAQ's own ``stop`` waits the grace period for every task it holds, the idle ones included: the
    processors blocked waiting for a job and the upkeep loops sleeping between rounds never end on their
    own, so every shutdown waited the whole period and then warned that tasks did not finish. Here the
    running jobs get the grace period; the idle tasks are then cancelled at once; SAQ's ``stop`` only
    runs the shutdown hooks. A job still running after the grace period is cancelled and retried (SAQ's
    behaviour), and that, only, is worth a warning.
    """

    async def stop(self) -> None:
        self.event.set()  # no new jobs; processors that finish a job do not start another
        loop = asyncio.get_running_loop()
        grace = self._shutdown_grace_period_s or 0
        deadline = loop.time() + grace
        running = [ctx["task"] for ctx in list(self.job_task_contexts.values()) if not ctx["task"].done()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            if late:
                log.warning(
                    "%d job(s) still running after the shutdown grace period: cancelled, retried later", len(late)
                )
        # Let the processors record the outcome of the jobs that just ended (a write each: milliseconds, more on
        # a loaded machine, so within what is left of the grace period and at least a second), then drop the
        # idle ones. Cancelling a processor mid-write would leave a finished job active, to be run again.
        deadline = max(deadline, loop.time() + 1.0)
        while loop.time() < deadline:
            if not self.job_task_contexts:
                break
            await asyncio.sleep(0.05)
        idle = [task for task in self.tasks if not task.done()]
        for task in idle:
            task.cancel()
        await asyncio.gather(*idle, return_exceptions=True)
        await super().stop()


def build_worker(config: JobsConfig, *, handle_signals: bool = True, plugins: Sequence[WorkerPlugin] = ()) -> Worker:
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
        for plugin in plugins:
            await plugin.startup(ctx)
        lake_context(ctx, config)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for plugin in reversed(plugins):
            with contextlib.suppress(Exception):
                await plugin.shutdown(ctx)
        await engine.dispose()

    worker: Worker[Any] = GracefulWorker(
        queue,
        functions=[*FUNCTIONS, *(f for plugin in plugins for f in plugin.functions)],
        cron_jobs=[*CRON_JOBS, *lake_cron_jobs(config)],
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


async def start_worker(config: JobsConfig, plugins: Sequence[WorkerPlugin] = ()) -> InProcessWorker:
    worker = build_worker(config, handle_signals=False, plugins=plugins)
    await worker.queue.connect()
    handle = InProcessWorker(worker)
    handle.task = asyncio.create_task(worker.start(), name="saq-worker")
    return handle


def run_worker(config: JobsConfig, plugins: Sequence[WorkerPlugin] = ()) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""

    async def main() -> None:
        worker = build_worker(config, plugins=plugins)
        await worker.queue.connect()
        try:
            await worker.start()
        finally:
            await worker.queue.disconnect()

    asyncio.run(main())
