"""The ceiling of the live-stream figure: a bare Litestar WebSocket on Granian pushing paced frames.

No database, no auth, no filters: one broadcaster makes ``batch`` frames every ``1 / posts`` seconds (the
shape of the stream's load: bulk posts of a few events, each read once and handed to every subscriber) and
every connected socket sends them, one text frame each, the size of an event. Each frame carries the time it
was made, so the client measures made → received, the part of the stream's latency no server code can avoid
on this machine. ``bench/bench_stream.py`` serves it with Granian exactly as it serves the API.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from litestar import Litestar, WebSocket, get, websocket

PAD = "x" * 600
"""About the size of a demo event's JSON."""


class Mailbox:
    """One socket's buffer and its wake-up."""

    def __init__(self) -> None:
        self.buffer: deque[bytes] = deque()
        self.wake = asyncio.Event()


class Broadcaster:
    """Makes the frames and hands them to every socket's mailbox."""

    def __init__(self) -> None:
        self.mailboxes: set[Mailbox] = set()

    async def run(self, posts: float, batch: int, seconds: float) -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            delay = start + n / posts - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            frames = [b'{"type":"log","position":%d,"data":{"t":%.6f,"pad":"%s"}}' % (n, now, PAD.encode())]
            frames *= batch
            for box in self.mailboxes:
                box.buffer.extend(frames)
                box.wake.set()
            n += 1


broadcaster = Broadcaster()


@websocket("/push")
async def push(socket: WebSocket[Any, Any, Any]) -> None:
    """Hold the socket; send whatever the broadcaster made, a batch per wake-up."""
    await socket.accept()
    box = Mailbox()
    broadcaster.mailboxes.add(box)
    try:
        while True:
            await box.wake.wait()
            box.wake.clear()
            while box.buffer:
                await socket.send_data(box.buffer.popleft(), mode="text")
    finally:
        broadcaster.mailboxes.discard(box)


@get("/start")
async def start(posts: float = 50, batch: int = 10, seconds: float = 10) -> dict[str, int]:
    """Run the broadcaster: ``posts`` batches of ``batch`` frames a second for ``seconds``; answer when done."""
    await broadcaster.run(posts, batch, seconds)
    return {"sockets": len(broadcaster.mailboxes)}


def create_app() -> Litestar:
    return Litestar(route_handlers=[push, start])
