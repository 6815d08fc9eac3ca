"""The worker's side of scheduled exports: a loop that delivers every closed window in order, and the task
behind ``POST /api/v1/export-schedules/{id}/run``.

Every ``tick_seconds`` the loop lists the tenants with enabled schedules (``auditlog_export_schedule_tenants()``),
records each tenant's log position (``windows.take_mark``), and for each schedule whose next window has ended
at least the close lag ago (and whose retry time, after a failure, has come) starts a catch-up: deliver the
cursor's window if it is closed (``windows.ensure_fence`` then ``fence_settled``), move on to the next, and stop
at the first window that is not closed yet or fails. So windows are delivered in order, one at a time per
schedule, and windows missed while no worker ran are delivered, oldest first, as soon as one is back. Several
workers may run the loop: the per-schedule lock in ``runner`` lets one of them deliver.

``run_export_schedule`` (the manual run) delivers the schedule's last closed window now: when the cursor has not
passed it, by catching up to it (earlier windows first, retry time ignored); when it was delivered already, by
delivering it again (same object, same idempotency key). While that window is not closed yet or the schedule is
busy, the task re-queues itself for a few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.audit_trail.writer_lease import WriterLease
from app.export_schedules.runner import RunnerConfig, RunResult, deliver_window
from app.export_schedules.windows import ensure_fence, fence_settled, take_mark, window_end
from app.settings import Settings
from db.urls import plain_dsn

__all__ = [
    "ExportScheduler",
    "ExportSchedulesPlugin",
    "enqueue_manual_run",
    "export_schedules_plugin",
    "run_export_schedule",
]

log = logging.getLogger(__name__)

SCHEDULER_KEY: Final = "export_scheduler"
MANUAL_RETRY_SECONDS: Final = 2
MANUAL_GIVE_UP_SECONDS: Final = 600
_SCHEDULES = """
SELECT id, every, next_window_start, retry_at FROM export_schedules
WHERE tenant_id = $1 AND enabled ORDER BY next_window_start, id
"""


async def _raw(session: Any) -> Any:
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection


class ExportScheduler:
    """Finds due windows and delivers them (``tick`` in the loop; ``run_due`` to do one pass and wait)."""

    def __init__(self, cfg: RunnerConfig, *, tick_seconds: float = 30.0) -> None:
        self.cfg = cfg
        self.tick_seconds = tick_seconds
        self._running: dict[uuid.UUID, asyncio.Task[list[RunResult]]] = {}
        self._loop: asyncio.Task[None] | None = None

    # -- the loop ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.create_task(self._forever(), name="export-schedules")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("export schedule sweep failed")
            await asyncio.sleep(self.tick_seconds)

    # -- one pass ------------------------------------------------------------------------------------
    async def tick(self, now: datetime | None = None) -> list[asyncio.Task[list[RunResult]]]:
        """Start a catch-up for every schedule with a window due (not already catching up here)."""
        now = now or datetime.now(UTC)
        async with self.cfg.db.system() as session:
            tenants = [
                r[0] for r in await (await _raw(session)).fetch("SELECT * FROM auditlog_export_schedule_tenants()")
            ]
        started = []
        for tenant_id in tenants:
            async with self.cfg.db.tenant(tenant_id) as session:
                conn = await _raw(session)
                await take_mark(conn, tenant_id, now)
                schedules = await conn.fetch(_SCHEDULES, tenant_id)
            for row in schedules:
                due = window_end(row["next_window_start"], row["every"]) + self.cfg.lag <= now
                waiting = row["retry_at"] is not None and row["retry_at"] > now
                running = self._running.get(row["id"])
                if not due or waiting or (running is not None and not running.done()):
                    continue
                task = asyncio.create_task(self.catch_up(tenant_id, row["id"], now), name=f"export-{row['id']}")
                self._running[row["id"]] = task
                task.add_done_callback(functools.partial(self._forget, row["id"]))
                started.append(task)
        return started

    def _forget(self, schedule_id: uuid.UUID, task: asyncio.Task[list[RunResult]]) -> None:
        if self._running.get(schedule_id) is task:
            del self._running[schedule_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("catching up export schedule %s failed", schedule_id, exc_info=task.exception())

    async def run_due(self, now: datetime | None = None) -> list[RunResult]:
        """One pass, waiting for every delivery it starts (tests and ``auditlog``'s one-shot use)."""
        results: list[RunResult] = []
        for task in await self.tick(now):
            results.extend(await task)
        return results

    async def closed(self, tenant_id: uuid.UUID, schedule_id: uuid.UUID, end: datetime, now: datetime) -> bool:
        """Whether the window ending at ``end`` is closed (taking a fence first when none covers it)."""
        async with self.cfg.db.tenant(tenant_id) as session:
            if not await ensure_fence(await _raw(session), tenant_id, schedule_id, end, now, self.cfg.lag):
                return False
        async with self.cfg.db.tenant(tenant_id) as session:  # after the fence's own transaction ended
            return await fence_settled(await _raw(session), tenant_id, schedule_id, end, self.cfg.lag)

    async def catch_up(
        self,
        tenant_id: uuid.UUID,
        schedule_id: uuid.UUID,
        now: datetime,
        *,
        until: datetime | None = None,
        trigger: str = "schedule",
        ignore_retry: bool = False,
    ) -> list[RunResult]:
        """Deliver the schedule's closed windows in order (up to the one starting at ``until``); stop at the first
        that is not closed or fails."""
        results: list[RunResult] = []
        while True:
            async with self.cfg.db.tenant(tenant_id) as session:
                row = await (await _raw(session)).fetchrow(
                    "SELECT every, next_window_start, retry_at, enabled FROM export_schedules"
                    " WHERE tenant_id = $1 AND id = $2",
                    tenant_id,
                    schedule_id,
                )
            if row is None or not row["enabled"]:
                return results
            start = row["next_window_start"]
            end = window_end(start, row["every"])
            if (until is not None and start > until) or end + self.cfg.lag > now:
                return results  # not asked for, or not ended long enough ago
            if not ignore_retry and row["retry_at"] is not None and row["retry_at"] > now:
                return results
            if not await self.closed(tenant_id, schedule_id, end, now):
                results.append(RunResult("not_closed", start, end))
                return results
            result = await deliver_window(self.cfg, tenant_id, schedule_id, start, now=now, trigger=trigger)
            results.append(result)
            if result.status != "delivered":
                return results

    async def run_manual(
        self, tenant_id: uuid.UUID, schedule_id: uuid.UUID, start: datetime, now: datetime
    ) -> RunResult:
        """Deliver the window starting at ``start`` now (see the module docstring)."""
        async with self.cfg.db.tenant(tenant_id) as session:
            cursor = await (await _raw(session)).fetchval(
                "SELECT next_window_start FROM export_schedules WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                schedule_id,
            )
        if cursor is None:
            return RunResult("gone", start)
        if cursor <= start:
            results = await self.catch_up(tenant_id, schedule_id, now, until=start, trigger="manual", ignore_retry=True)
            mine = [r for r in results if r.window_start == start]
            if mine:
                return mine[-1]
            return results[-1] if results else RunResult("skipped", start)
        return await deliver_window(
            self.cfg, tenant_id, schedule_id, start, now=now, trigger="manual", expect_cursor=False
        )


async def enqueue_manual_run(
    queue: Any, tenant_id: uuid.UUID, schedule_id: uuid.UUID, start: datetime, *, give_up_at: float | None = None
) -> None:
    """Queue the manual run of one window (one job per window at a time: a second request while it waits is
    the same job)."""
    now = time.time()
    key = f"export-schedule-run-{schedule_id}-{int(start.timestamp())}"
    if give_up_at is not None:  # a re-queue by the running job itself: a key of its own
        key += f"-{int(now * 1000)}"
    await queue.enqueue(
        "run_export_schedule",
        key=key,
        scheduled=int(now) + (MANUAL_RETRY_SECONDS if give_up_at is not None else 0),
        timeout=6 * 3600,
        tenant_id=str(tenant_id),
        schedule_id=str(schedule_id),
        window_start=start.isoformat(),
        give_up_at=give_up_at if give_up_at is not None else now + MANUAL_GIVE_UP_SECONDS,
    )


async def run_export_schedule(
    ctx: dict[str, Any], *, tenant_id: str, schedule_id: str, window_start: str, give_up_at: float
) -> str:
    """SAQ task: the manual run of one window (``POST /export-schedules/{id}/run``)."""
    scheduler: ExportScheduler = ctx[SCHEDULER_KEY]
    tid, sid = uuid.UUID(tenant_id), uuid.UUID(schedule_id)
    start = datetime.fromisoformat(window_start)
    result = await scheduler.run_manual(tid, sid, start, datetime.now(UTC))
    if result.status in ("not_closed", "busy") and time.time() < give_up_at:
        await enqueue_manual_run(ctx["worker"].queue, tid, sid, start, give_up_at=give_up_at)
    return result.status


@dataclass
class ExportSchedulesPlugin:
    """The scheduled-export part of the job worker (a ``jobs.worker.WorkerPlugin``): the loop and the manual-run
    task, with an ingest writer to record the ``EXPORT`` reads (the API's, in-process; else its own)."""

    writer: WriterLease
    tick_seconds: float
    lag: timedelta
    retry_delay: float
    allow_private: bool
    functions: Sequence[Callable[..., Any]] = (run_export_schedule,)

    async def startup(self, ctx: dict[str, Any]) -> None:
        await self.writer.start(ctx)
        if "analytics" not in ctx:
            from analytics.engine import AnalyticsEngine

            ctx["analytics"] = AnalyticsEngine()
        cfg = RunnerConfig(
            db=ctx["db"],
            keyrings=ctx["keyrings"],
            lag=self.lag,
            retry_delay=self.retry_delay,
            allow_private=self.allow_private,
            engine=ctx["analytics"],
            lake=lambda: ctx.get("lake"),  # set by the worker after the plugins start
            audit=self.writer,
        )
        scheduler = ExportScheduler(cfg, tick_seconds=self.tick_seconds)
        scheduler.start()
        ctx[SCHEDULER_KEY] = scheduler

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        scheduler = ctx.pop(SCHEDULER_KEY, None)
        if scheduler is not None:
            await scheduler.stop()
        await self.writer.stop()


def export_schedules_plugin(settings: Settings, host: Any = None) -> ExportSchedulesPlugin:
    """The plugin configured from the API's settings (``host``: the API runtime when in-process)."""
    return ExportSchedulesPlugin(
        writer=WriterLease(plain_dsn(settings.database_url or ""), host),
        tick_seconds=settings.export_schedule_tick_seconds,
        lag=timedelta(seconds=settings.export_schedule_close_lag_seconds),
        retry_delay=settings.export_schedule_retry_delay_seconds,
        allow_private=settings.allow_private_urls,
    )
