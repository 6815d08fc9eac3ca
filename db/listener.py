"""One ``LISTEN`` connection kept open for as long as a task runs, reconnecting after any failure.

Used by every process-wide listener (the live-stream hub, the alert evaluator): it connects, subscribes,
tells the caller it is (re)connected (so it can catch up on what it may have missed), and checks the
connection every ``check_seconds`` so a dead server is noticed even when nobody is notifying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

__all__ = ["listen_forever"]

log = logging.getLogger(__name__)


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Callable[[Any, int, str, str], None],
    *,
    on_connect: Callable[[], Awaitable[None] | None] | None = None,
    check_seconds: float = 1.0,
    name: str = "listener",
) -> None:
    """Run until cancelled: listen on ``channel``, calling ``on_notify`` (asyncpg's listener signature)."""
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(channel, on_notify)
            if on_connect is not None:
                result = on_connect()
                if result is not None:
                    await result
            while not conn.is_closed():
                await asyncio.sleep(check_seconds)
                await conn.execute("SELECT 1")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s reconnecting: %s", name, exc)
            await asyncio.sleep(check_seconds)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
