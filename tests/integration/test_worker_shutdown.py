"""The SAQ worker stops cleanly on the real PostgreSQL queue: at once when idle, after the running job (which
completes, not retried) when busy, and without SAQ's warning that tasks did not finish."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from saq import Status

from jobs.queue import make_queue
from jobs.worker import GracefulWorker
from tests.conftest import Database, make_settings

GRACE_S = 5


async def slow_job(ctx: dict[str, Any], *, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def _worker(database: Database, tmp_path: Path) -> GracefulWorker:
    queue = make_queue(make_settings(database, tmp_path).jobs_config())
    worker = GracefulWorker(queue, functions=[slow_job], concurrency=2, shutdown_grace_period_s=GRACE_S)
    worker.SIGNALS = []
    return worker


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_idle_worker_stops_at_once_without_warning(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = _worker(database, tmp_path)
    await worker.queue.connect()
    runner = asyncio.create_task(worker.start())
    try:
        await asyncio.sleep(1.5)  # processors waiting for jobs, upkeep loops sleeping
        caplog.set_level(logging.INFO)
        started = time.monotonic()
        await worker.stop()
        await asyncio.wait_for(runner, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await worker.queue.disconnect()
    assert elapsed < 1.5, f"idle stop took {elapsed:.2f}s (SAQ alone waits the {GRACE_S}s grace period)"
    assert _warnings(caplog) == []


async def test_running_job_finishes_before_the_worker_stops(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = _worker(database, tmp_path)
    await worker.queue.connect()
    runner = asyncio.create_task(worker.start())
    try:
        job = await worker.queue.enqueue("slow_job", seconds=1.0)
        assert job is not None
        deadline = time.monotonic() + 20
        while job.status != Status.ACTIVE:
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.05)
            await job.refresh()
        caplog.set_level(logging.INFO)
        started = time.monotonic()
        await worker.stop()
        await asyncio.wait_for(runner, timeout=5)
        elapsed = time.monotonic() - started
        await job.refresh()
    finally:
        await worker.queue.disconnect()
    assert job.status == Status.COMPLETE and job.result == "done"
    assert elapsed < GRACE_S - 1, f"stop took {elapsed:.2f}s: it waited for idle tasks too"
    assert _warnings(caplog) == []
