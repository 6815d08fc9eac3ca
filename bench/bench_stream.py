"""Live-stream benchmark: WebSocket subscribers across two API processes while events are posted.

Run on demand (never in CI): ``uv run --frozen python bench/bench_stream.py`` (``--subscribers``,
``--rate``, ``--seconds``). It starts its own embedded PostgreSQL and two API processes (Granian, one worker
each) on 127.0.0.1, opens the subscribers (half on each process, in two child processes of their own so
the poster is not starved), then:

0. The ceiling: the same subscribers on two bare Litestar WebSocket servers (``bench/hello_ws.py``, Granian,
   no database) that push frames of an event's size at the same rate and in the same batches; made → received
   p50/p99. The stream cannot beat it on this machine: it is what the transport and the clients cost.
1. Delivery latency at a paced load: ``--rate`` events/s posted in ``POST /logs/bulk`` requests of ``--batch``
   events (``--batch 1``: single ``POST /logs``), alternating between the two processes, for ``--seconds``;
   for each event, the time from its ``201`` to each subscriber's frame (clamped at 0: a frame may arrive
   before the 201). Prints p50/p99 over every (event, subscriber) pair, and how many pairs were missing.
2. Ingest with and without subscribers: bulk ingest (4 clients x 1,000-event batches for ``--seconds`` / 2)
   with no subscriber, then with the subscribers connected, then (the ratio's ceiling) with the same
   subscriber processes fed as many frames per second by two bare servers while the API has no subscriber:
   what the clients and the transport alone take from ingest on these two cores. Two alternating rounds;
   prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, Stack, make_event, writer_token
from db import migrate
from db.provision import OWNER_ROLE

EVENT_ID = (b'"data":{"id":"', b'"')
"""Where a stream frame names its event: the key the poster's 201 time is looked up by."""
MADE_AT = (b'"data":{"t":', b",")
"""Where a ceiling frame carries the time it was made."""


def _subscriber_proc(
    urls: list[str], token: str | None, seconds: float, ready: Any, out: Any, key: tuple[bytes, bytes]
) -> None:
    """Child process: hold one socket per URL, record (key, receive time) for every frame that has the key."""
    marker, end = key

    async def run() -> list[tuple[str, float]]:
        seen: list[tuple[str, float]] = []
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session:
            timeout = aiohttp.ClientWSTimeout(ws_close=2.0)
            sockets = [await session.ws_connect(url, headers=headers, max_msg_size=0, timeout=timeout) for url in urls]
            ready.set()

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return
                    now = time.time()
                    data = msg.data.encode() if isinstance(msg.data, str) else msg.data
                    at = data.find(marker)
                    if at >= 0:
                        start = at + len(marker)
                        seen.append((data[start : data.index(end, start)].decode(), now))

            readers = [asyncio.create_task(read(ws)) for ws in sockets]
            await asyncio.sleep(seconds)
            for task in readers:
                task.cancel()
            # all at once, each waiting at most 2 s for the server's reply (a server blocked in a send may
            # never answer: one after the other at aiohttp's default 10 s took minutes with 25 sockets)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return seen

    out.send(asyncio.run(run()))


async def _paced_posts(bases: list[str], token: str, rate: int, seconds: float, batch: int) -> dict[str, float]:
    """``rate`` events/s as ``POST /logs/bulk`` of ``batch`` events (``batch`` 1: single ``POST /logs``),
    alternating between the processes; each event's 201 time, keyed by its id. Failed posts are counted."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    acked: dict[str, float] = {}
    failed = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64)
    timeout = httpx.Timeout(30.0, pool=None)
    async with (
        httpx.AsyncClient(base_url=bases[0], headers=headers, limits=limits, timeout=timeout) as a,
        httpx.AsyncClient(base_url=bases[1], headers=headers, limits=limits, timeout=timeout) as b,
    ):
        clients = [a, b]

        async def post(n: int) -> None:
            nonlocal failed
            events = [make_event(rng, now, span_days=1) for _ in range(batch)]
            try:
                if batch == 1:
                    response = await clients[n % 2].post("/api/v1/logs", json=events[0])
                    ids = [response.json()["id"]] if response.status_code == 201 else []
                else:
                    response = await clients[n % 2].post("/api/v1/logs/bulk", json=events)
                    ids = response.json()["ids"] if response.status_code == 201 else []
            except httpx.HTTPError:
                failed += batch
                return
            at = time.time()
            failed += batch - len(ids)
            for event_id in ids:
                acked[event_id] = at

        tasks = []
        start = time.monotonic()
        requests = int(rate * seconds / batch)
        for n in range(requests):
            delay = start + n * batch / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(n)))
        await asyncio.gather(*tasks)
    if failed:
        print(f"  ({failed} events not acknowledged)")
    return acked


async def _bulk_rate(base: str, token: str, seconds: float, clients: int = 4, size: int = 1000) -> float:
    rng = random.Random(11)
    now = datetime.now(UTC)
    body = [make_event(rng, now, span_days=1) for _ in range(size)]
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            while time.monotonic() < deadline:
                response = await c.post("/api/v1/logs/bulk", json=body)
                response.raise_for_status()
                done += size

    start = time.monotonic()
    await asyncio.gather(*[client() for _ in range(clients)])
    return done / (time.monotonic() - start)


async def _bulk_beside_bare(base: str, token: str, hello: list[int], rate: float, seconds: float) -> float:
    """Bulk ingest while two bare servers push ``rate`` frames/s to each of their sockets (what each of the
    stream's subscribers received in the with-subscribers run), so the clients and the transport cost what
    they cost there, without the stream's own work."""
    batch = 100
    params = {"posts": max(rate, batch) / batch, "batch": batch, "seconds": seconds}
    async with httpx.AsyncClient(timeout=seconds + 60) as client:
        pushing = [asyncio.create_task(client.get(f"http://127.0.0.1:{p}/start", params=params)) for p in hello]
        rate_now = await _bulk_rate(base, token, seconds)
        await asyncio.gather(*pushing)
    return rate_now


def _start_subscribers(
    ws_urls: list[str], token: str | None, count: int, seconds: float, key: tuple[bytes, bytes] = EVENT_ID
) -> list[tuple[Any, Any]]:
    ctx = mp.get_context("spawn")
    groups = [[ws_urls[i % 2] for i in range(count) if i % 2 == g] for g in (0, 1)]
    procs = []
    for urls in groups:
        ready = ctx.Event()
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_subscriber_proc, args=(urls, token, seconds, ready, child, key))
        proc.start()
        ready.wait(60)
        procs.append((proc, parent))
    return procs


def _collect(subs: list[tuple[Any, Any]]) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    for proc, pipe in subs:
        seen.extend(pipe.recv())
        proc.join()
    return seen


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) <= 100:
        return float("nan"), float("nan")
    p = statistics.quantiles(latencies, n=100)
    return p[49], p[98]


def _ceiling(stack: Stack, args: argparse.Namespace) -> tuple[float, float, int]:
    """Made → received p50/p99 (ms) and frames received, from two bare WebSocket servers at the same load."""
    ports = [stack.serve("bench.hello_ws:create_app", stack.api_env()) for _ in range(2)]
    try:
        subs = _start_subscribers(
            [f"ws://127.0.0.1:{p}/push" for p in ports], None, args.subscribers, args.seconds + 8, key=MADE_AT
        )
        time.sleep(1.0)

        async def start_both() -> None:
            params = {"posts": args.rate / args.batch, "batch": args.batch, "seconds": args.seconds}
            async with httpx.AsyncClient(timeout=args.seconds + 60) as client:
                await asyncio.gather(*[client.get(f"http://127.0.0.1:{p}/start", params=params) for p in ports])

        asyncio.run(start_both())
        seen = _collect(subs)
    finally:
        stack.stop_servers()
    latencies = sorted(max(0.0, at - float(made)) * 1000 for made, at in seen)
    p50, p99 = _percentiles(latencies)
    return p50, p99, len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--rate", type=int, default=500, help="events/s posted during the latency phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=10, help="events per POST in the latency phase (1: POST /logs)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a TERM still stops the servers (finally below)
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-stream-"))
    stack = Stack(workdir, workers=1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        c50, c99, ceiling_frames = _ceiling(stack, args)
        print(
            f"ceiling: bare WebSocket servers, {args.subscribers} subscribers on 2 processes, {args.rate} frames/s"
            f" in batches of {args.batch} for {args.seconds:.0f} s: {ceiling_frames} frames received;"
            f" made→received p50 {c50:.1f} ms, p99 {c99:.1f} ms"
        )
        env = stack.api_env()
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
        ports = [stack.serve("app.asgi:create_app_from_env", env) for _ in range(2)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        ws_urls = [f"ws://127.0.0.1:{p}/api/v1/logs/stream" for p in ports]
        _tenant, token = asyncio.run(writer_token(bases[0]))

        # 1. latency at a paced load
        subs = _start_subscribers(ws_urls, token, args.subscribers, args.seconds + 8)
        time.sleep(1.0)
        acked = asyncio.run(_paced_posts(bases, token, args.rate, args.seconds, args.batch))
        seen = _collect(subs)
        latencies = sorted(max(0.0, at - acked[eid]) * 1000 for eid, at in seen if eid in acked)
        expected = len(acked) * args.subscribers
        p50, p99 = _percentiles(latencies)
        print(
            f"delivery: {args.subscribers} subscribers on 2 processes, {args.rate} events/s in POSTs of {args.batch}"
            f" for {args.seconds:.0f} s:"
            f" {len(acked)} events acknowledged, {len(latencies)}/{expected} frames received;"
            f" 201→frame p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 ≤ 100 ms; {p99 / c99:.1f}x the ceiling's p99)"
        )

        # 2. ingest without subscribers, with them, and (the ceiling of the ratio) with the same subscriber
        #    processes receiving as many frames from two bare WebSocket servers while the API has no subscriber
        hello = [stack.serve("bench.hello_ws:create_app", stack.api_env()) for _ in range(2)]
        push_urls = [f"ws://127.0.0.1:{p}/push" for p in hello]
        without, with_subs, beside_bare, pushed = [], [], [], []
        for _ in range(2):
            without.append(asyncio.run(_bulk_rate(bases[0], token, args.seconds / 2)))
            subs = _start_subscribers(ws_urls, token, args.subscribers, args.seconds / 2 + 4)
            with_subs.append(asyncio.run(_bulk_rate(bases[0], token, args.seconds / 2)))
            per_socket = len(_collect(subs)) / args.subscribers / (args.seconds / 2)  # frames/s each received
            subs = _start_subscribers(push_urls, None, args.subscribers, args.seconds / 2 + 4, key=MADE_AT)
            beside_bare.append(asyncio.run(_bulk_beside_bare(bases[0], token, hello, per_socket, args.seconds / 2)))
            pushed.append(per_socket)
            _collect(subs)
        a, b, c = statistics.median(without), statistics.median(with_subs), statistics.median(beside_bare)
        runs = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
        print(
            f"ingest: without subscribers {a:,.0f} events/s (runs {runs(without)}), with {args.subscribers}"
            f" subscribers {b:,.0f} events/s (runs {runs(with_subs)}): ratio {b / a:.2f} (target ≥ 0.90);"
            f" ceiling: the same subscribers fed as many frames by bare servers"
            f" ({', '.join(f'{x:,.0f}' for x in pushed)} frames/s each) {c:,.0f} events/s"
            f" (runs {runs(beside_bare)}): ratio {c / a:.2f}; the stream's own share: {b / c:.2f}"
        )
    finally:
        stack.close()


if __name__ == "__main__":
    main()
