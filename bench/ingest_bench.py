"""Rough ingest throughput against a running server: single POST /api/v1/logs and POST /logs/bulk.

A minimal keep-alive HTTP/1.1 client on raw asyncio streams, so the client is not the bottleneck (httpx
is, above a few hundred requests per second). Usage:

    uv run python bench/ingest_bench.py --url http://127.0.0.1:8000 --token <bearer> [--seconds 5]

Note the per-caller rate limit (AUDIT_RATE_LIMIT_LOG_ROUTES, default 10,000/min) applies; raise it for
the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from urllib.parse import urlparse

EVENT = {
    "action": "CREATE",
    "resource_type": "document",
    "resource_id": "doc-1",
    "message": "user jane@example.com changed the title",
    "metadata": {"source": "bench", "password": "x", "n": 1},
}
_CL = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


async def _worker(host: str, port: int, request: bytes, end: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.monotonic() < end:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CL.search(head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            if not head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"{head.splitlines()[0]!r}: {body[:300]!r}")
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()
    return done


async def run(
    url: str, token: str, path: str, payload: bytes, per_request: int, concurrency: int, seconds: float
) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    latencies: list[float] = []
    started = time.monotonic()
    counts = await asyncio.gather(
        *(_worker(host, port, request, started + seconds, latencies) for _ in range(concurrency))
    )
    elapsed = time.monotonic() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"{path} x{per_request} concurrency={concurrency}: {sum(counts) * per_request / elapsed:,.0f} events/s "
        f"({sum(counts) / elapsed:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    single = json.dumps(EVENT).encode()
    for concurrency in (1, 32, 128):
        asyncio.run(run(args.url, args.token, "/api/v1/logs", single, 1, concurrency, args.seconds))
    for size, concurrency in ((1000, 4), (10_000, 2)):
        bulk = json.dumps([EVENT] * size).encode()
        asyncio.run(run(args.url, args.token, "/api/v1/logs/bulk", bulk, size, concurrency, args.seconds))


if __name__ == "__main__":
    main()
