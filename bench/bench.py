"""Ingest and search benchmark, run on demand (never in CI); prints figures next to their ceilings.

    uv run python bench/bench.py                 # the 1M-event figures (15-20 minutes on 2 shared cores)
    uv run python bench/bench.py --big 10000000  # also the pages at 10M events (+30-40 minutes, most of it loading)
    uv run python bench/bench.py --phases page   # one figure only (bulk, single, page)
    uv run python bench/bench.py --workers 2     # Granian workers for the API and the hello app (default 1)

Everything runs on this machine against 127.0.0.1, bounded in time: an embedded PostgreSQL (or the
superuser DSN in ``AUDIT_BENCH_ADMIN_URL``), the API under Granian, and the load generators. Figures:

1. bulk ingest (4 clients, 1,000-event batches with metadata) against two ceilings of raw asyncpg COPY of the
   same rows, in alternating rounds: the lean ceiling of issue 13 (ONE connection, 1,000-row batches, into a
   table list-partitioned by tenant with only its primary key ``(tenant_id, id)`` and one
   ``(tenant_id, "timestamp" DESC, id DESC)`` index) — target ≥ 0.30 — and the older one (4 connections into
   a table like ``audit_logs``, same indexes), with the CPU each side spent per event;
2. single-event POST under 64 connections (wrk) ÷ a hello-world Litestar POST on the same Granian
   settings — target ≥ 0.25, with p99 ≤ 100 ms;
3. pages after 1M events (and optionally 10M): the two-filter page (severity, resource_type, 2-day window,
   limit 50) with 16 connections always in flight (throughput) beside a hello-world GET (its ceiling); then
   the four pages of the read target at a paced ~200 requests/s (wrk, 16 connections, a Lua ``delay`` of
   75 ms after each response): two filters with a 2-day window, ``user_id`` alone, ``q`` with a rare word,
   ``q`` with a word in most events — target p99 ≤ 25 ms each; and, reported beside them, the rare word as a
   search the API has not seen before (each request its own filter set, so none is known rare).

Each HTTP figure is preceded by a 3 s warm-up that is not counted, and the single-POST and read figures by
``VACUUM (ANALYZE)`` and a ``CHECKPOINT`` of the rows written before them (the ceilings' scratch tables are
dropped), so they measure the steady state rather than the first prepared statements, or autovacuum and
the checkpointer catching up with the previous figure's rows. Each figure also prints a CPU-speed probe
(a fixed pure-Python loop, timed just before it) or the load average, and the CPU each process spent per
request: on a shared machine these tell a slower moment of the machine from slower code. Requires ``wrk``
(Debian package ``wrk``) for the HTTP load phases.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.logs.prepare import new_event_id  # noqa: E402
from app.verifiable.note import generate_signer_key  # noqa: E402
from db import migrate  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE, provision  # noqa: E402

RESOURCE_TYPES = [f"resource_{i}" for i in range(20)] + ["document"]
ACTIONS = ["CREATE", "READ", "VIEW", "UPDATE", "DELETE", "LOGIN", "LOGOUT", "EXPORT"]
SEVERITIES = ["INFO"] * 14 + ["WARNING"] * 3 + ["ERROR"] * 2 + ["CRITICAL"]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()  # noqa: SIM905
"""A message is 10 draws from these 14 words, so each is in 1 - (13/14)**10 ≈ 52 % of events: "a word in most
events" for the ``q`` page."""
RARE_WORDS = ("xylophone", "yodelling", "zeppelin")
"""One of these ends about one message in 3,121 (each word ~1 in 9,362 events, ~107 per million): "a rare word"."""
RARE_EVERY = 3121
DATABASE = "auditlog_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_event(rng: random.Random, now: datetime, span_days: int = 60) -> dict[str, Any]:
    ts = now - timedelta(seconds=rng.randint(0, span_days * 86400))
    request_id = uuid.UUID(int=rng.getrandbits(128))
    message = " ".join(rng.choice(WORDS) for _ in range(10))
    marker = request_id.int % RARE_EVERY  # no extra draw
    if marker < len(RARE_WORDS):
        message += " " + RARE_WORDS[marker]
    return {
        "action": rng.choice(ACTIONS),
        "resource_type": rng.choice(RESOURCE_TYPES),
        "resource_id": f"res-{rng.randint(1, 100_000)}",
        "user_id": f"user-{rng.randint(1, 500)}",
        "session_id": f"sess-{rng.randint(1, 5000)}",
        "request_id": request_id.hex,
        "severity": rng.choice(SEVERITIES),
        "timestamp": ts.isoformat(),
        "ip_address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench/1.0",
        "message": message,
        "metadata": {
            "plan": rng.choice(["free", "team", "enterprise"]),
            "region": rng.choice(["eu-west-1", "us-east-1", "ap-southeast-1"]),
            "amount": rng.randint(1, 10_000),
            "feature": rng.choice(WORDS),
            "ok": rng.random() > 0.1,
            "tags": [rng.choice(WORDS), rng.choice(WORDS)],
        },
    }


# -- infrastructure ---------------------------------------------------------------------------------
class Stack:
    """PostgreSQL (embedded unless AUDIT_BENCH_ADMIN_URL), the bench database, and server processes."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        self.workers = workers
        self.embedded: Any = None
        self.procs: list[subprocess.Popen[bytes]] = []
        admin = os.environ.get("AUDIT_BENCH_ADMIN_URL")
        if admin:
            self.admin_dsn = admin
            rest = admin.split("://", 1)[1].split("@", 1)[-1]
            self.hostpart = rest.split("/", 1)[0]
        else:
            from db.embedded import EmbeddedPostgres

            self.embedded = EmbeddedPostgres(workdir / "pg-root")
            self.embedded.start()
            self.admin_dsn = self.embedded.url("postgres", "postgres", driver="postgresql")

    def url(self, user: str, driver: str = "postgresql+asyncpg") -> str:
        if self.embedded is not None:
            return str(self.embedded.url(user, DATABASE, driver=driver))
        return f"{driver}://{user}@{self.hostpart}/{DATABASE}"

    async def create_database(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        finally:
            await conn.close()
        await provision(self.admin_dsn, DATABASE)

    def api_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
        env.update(
            AUDIT_ENV="production",
            AUDIT_DATABASE_URL=self.url(API_ROLE),
            AUDIT_MIGRATION_DATABASE_URL=self.url(OWNER_ROLE),
            AUDIT_DATA_DIR=str(self.workdir / "data"),
            AUDIT_MASTER_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            AUDIT_JWT_SIGNING_KEYS="bench:" + base64.urlsafe_b64encode(os.urandom(36)).decode(),
            AUDIT_OPERATOR_PASSWORD="bench-operator-password",
            AUDIT_CHECKPOINT_SIGNING_KEYS=generate_signer_key("auditlog.example"),
            AUDIT_ACCESS_TOKEN_TTL_SECONDS="7200",
            AUDIT_RATE_LIMIT_LOG_ROUTES="1000000000",
            AUDIT_RATE_LIMIT_OTHER_ROUTES="1000000000",
            AUDIT_DEMO_DATA="false",
            AUDIT_RUN_WORKER_IN_PROCESS="false",
            AUDIT_LOG_LEVEL="WARNING",
            AUDIT_DB_POOL_SIZE="20",
        )
        return env

    def serve(self, target: str, env: dict[str, str]) -> int:
        port = free_port()
        cmd = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(self.workers), "--no-access-log", "--backlog", "2048", target,
        ]  # fmt: skip
        log = (self.workdir / f"server-{port}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} exited: {(self.workdir / f'server-{port}.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 404):
                    return port
            time.sleep(0.2)
        raise RuntimeError(f"{target} did not start")

    def stop_servers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def close(self) -> None:
        self.stop_servers()
        if self.embedded is not None:
            self.embedded.stop()


def wrk(url: str, *, connections: int, duration: int, script: Path | None = None) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required for this phase (apt-get install wrk)")
    threads = 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    timed_out = float(timeouts.group(1)) if timeouts else 0.0
    # a request that timed out has no latency in wrk's histogram: its percentiles would hide it
    failed = requests == 0 or timed_out > 0
    return {
        "rps": rps,
        "p50": float("inf") if requests == 0 else ms("50"),
        "p99": float("inf") if failed else ms("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "timeouts": timed_out,
        "requests": requests,
    }


def cpu_probe() -> float:
    """Milliseconds of one fixed pure-Python loop, best of three. The machines this runs on are shared: the same
    loop has taken from 0.6 to 1.2 s at different moments of one session on an idle 2-vCPU machine, so every
    figure is printed next to the probe taken just before it, to tell a slower machine from slower code."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


class CPUMeter:
    """CPU seconds (user + system, every thread) used by process trees: the API server, PostgreSQL. Divided by
    the requests served, it is a per-request cost that host contention moves far less than req/s."""

    def __init__(self, **roots: int | None) -> None:
        self.roots = {name: pid for name, pid in roots.items() if pid is not None}

    def sample(self) -> dict[str, float]:
        out = {}
        for name, pid in self.roots.items():
            total = 0.0
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
            out[name] = total
        return out


def wrk_metered(meter: CPUMeter, url: str, **kwargs: Any) -> dict[str, float]:
    """:func:`wrk` plus the metered processes' CPU microseconds per request of that run."""
    before = meter.sample()
    run = wrk(url, **kwargs)
    after = meter.sample()
    for name in before:
        run[f"{name}_cpu_us"] = (after[name] - before[name]) / max(run["requests"], 1) * 1e6
    return run


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-figure medians over repeated runs (this machine's figures move between runs)."""
    return {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in runs[0]}


def lua_post(path: Path, token: str, body: bytes) -> Path:
    body_lua = json.dumps(body.decode())
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {body_lua}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    return path


def lua_get(path: Path, token: str, urls: list[str], *, delay_ms: int | None = None, fresh: bool = False) -> Path:
    """A wrk script that GETs one of ``urls`` at random; with ``delay_ms`` each connection waits that long after
    every response before its next request (wrk's ``delay``), which paces the load. ``fresh``: each request
    also gets an ``end_time`` of its own, far in the future (a filter that keeps every event), so that no two
    requests are the same search (the API remembers which searches are rare: ``app.logs.term_rarity``)."""
    items = ", ".join(json.dumps(u) for u in urls)
    pace = f"delay = function()\n  return {delay_ms}\nend\n" if delay_ms is not None else ""
    suffix = ""
    if fresh:
        suffix = (
            ' .. string.format("&end_time=2100-%02d-%02dT%02d:%02d:%02d.%06dZ", math.random(12), math.random(28),'
            " math.random(0, 23), math.random(0, 59), math.random(0, 59), math.random(0, 999999))"
        )
    path.write_text(
        f"local paths = {{{items}}}\n"
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "request = function()\n"
        f'  return wrk.format("GET", paths[math.random(#paths)]{suffix})\n'
        "end\n" + pace
    )
    return path


# -- API helpers ------------------------------------------------------------------------------------
async def writer_token(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        op = await client.post(
            "/api/v1/auth/token",
            json={"tenant": "platform", "username": "operator", "password": "bench-operator-password"},
        )
        op.raise_for_status()
        headers = {"Authorization": f"Bearer {op.json()['access_token']}"}
        tenant = await client.post("/api/v1/tenants", json={"name": f"bench-{uuid.uuid4().hex[:6]}"}, headers=headers)
        tenant.raise_for_status()
        tid = tenant.json()["id"]
        made = await client.post(
            f"/api/v1/tenants/{tid}/users",
            json={"username": "writer", "password": "writer-password-1", "role": "Admin"},
            headers=headers,
        )
        made.raise_for_status()
        token = await client.post(
            "/api/v1/auth/token", json={"tenant": tid, "username": "writer", "password": "writer-password-1"}
        )
        token.raise_for_status()
        return tid, token.json()["access_token"]


def batches(count: int, size: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(count):
        yield [make_event(rng, now) for _ in range(size)]


async def bulk_load(
    base: str, token: str, bodies: list[bytes], *, clients: int, duration: float | None, total: int | None = None
) -> tuple[int, float]:
    """POST the pre-encoded 1,000-event bodies from ``clients`` tasks; returns (events, seconds)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    inserted = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + duration if duration else None

    async def one(i: int) -> None:
        nonlocal inserted, sent
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
            n = i
            while True:
                if deadline and time.perf_counter() >= deadline:
                    return
                if total is not None:
                    if sent >= total:
                        return
                    sent += 1000
                response = await client.post("/api/v1/logs/bulk", content=bodies[n % len(bodies)])
                if response.status_code != 201:
                    raise RuntimeError(f"bulk failed: {response.status_code} {response.text[:300]}")
                inserted += response.json()["inserted"]
                n += clients

    await asyncio.gather(*(one(i) for i in range(clients)))
    return inserted, time.perf_counter() - start


# -- raw COPY ceilings ------------------------------------------------------------------------------
RAW_COLUMNS = [
    "tenant_id", "timestamp", "id", "seq", "received_at", "action", "resource_type", "resource_id",
    "user_id", "session_id", "request_id", "severity", "ip_address", "user_agent", "message", "payload",
    "search",
]  # fmt: skip


def search_vector(event: dict[str, Any]) -> str:
    """The ``search`` value the API stores for ``event`` (``db.blind_index``): message words with their
    positions, each metadata word as ``M`` + 11 characters of keyed MAC (a fixed bench key here)."""
    positions: dict[str, list[int]] = {}
    for pos, word in enumerate(re.findall(r"\w+", (event.get("message") or "").lower()), start=1):
        positions.setdefault(word, []).append(pos)
    parts = [f"'{w}':{','.join(map(str, at))}" for w, at in positions.items()]
    tokens = set()
    for value in _metadata_strings(event.get("metadata")):
        for word in re.findall(r"\w+", value.lower()):
            mac = hashlib.blake2b(word.encode(), key=b"bench", digest_size=8).digest()
            tokens.add("M" + base64.urlsafe_b64encode(mac).decode().rstrip("="))
    parts.extend(f"'{t}'" for t in sorted(tokens))
    return " ".join(parts)


def _metadata_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _metadata_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _metadata_strings(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


def raw_csv_chunks(events: list[list[dict[str, Any]]], tenant_id: uuid.UUID, count: int) -> list[bytes]:
    """``count`` 1,000-row chunks of the same rows as the API stores them (masked text, a payload the size of
    the ciphertext, the tsvector), each row with a fresh id made as the API makes them (UUIDv7), so chunks can all
    go into one table."""
    chunks = []
    seq = 0
    for i in range(count):
        batch = events[i % len(events)]
        buf = io.StringIO()
        out = csv.writer(buf)
        for e in batch:
            seq += 1
            payload = os.urandom(len(json.dumps(e["metadata"])) + 17 + 28)
            tsv = search_vector(e)
            out.writerow([
                tenant_id, e["timestamp"], new_event_id(), seq, datetime.now(UTC).isoformat(), e["action"],
                e["resource_type"], e["resource_id"], e["user_id"], e["session_id"], e["request_id"],
                e["severity"], e["ip_address"], e["user_agent"], e["message"], "\\x" + payload.hex(), tsv,
            ])  # fmt: skip
        chunks.append(buf.getvalue().encode())
    return chunks


async def raw_copy(
    stack: Stack, chunks: list[bytes], *, clients: int, duration: float, meter: CPUMeter | None = None
) -> tuple[int, float, dict[str, float]]:
    """The older ceiling: ``clients`` connections COPY into a table like ``audit_logs`` (same indexes). Returns
    (rows, seconds, CPU seconds of the metered processes while the connections were open)."""
    owner = stack.url(OWNER_ROLE, driver="postgresql")
    setup = await asyncpg.connect(owner)
    try:
        await setup.execute("DROP TABLE IF EXISTS bench_raw")
        await setup.execute("CREATE TABLE bench_raw (LIKE audit_logs INCLUDING DEFAULTS INCLUDING INDEXES)")
    finally:
        await setup.close()
    columns = RAW_COLUMNS
    copied = 0
    pending = iter(chunks)
    conns = [await asyncpg.connect(owner) for _ in range(clients)]
    before = meter.sample() if meter else {}
    start = time.perf_counter()
    deadline = start + duration

    async def one(conn: asyncpg.Connection) -> None:
        nonlocal copied
        for chunk in pending:
            if time.perf_counter() >= deadline:
                return
            await conn.copy_to_table("bench_raw", source=io.BytesIO(chunk), columns=columns, format="csv")
            copied += 1000

    try:
        await asyncio.gather(*(one(conn) for conn in conns))
        elapsed = time.perf_counter() - start
        after = meter.sample() if meter else {}  # before the backends exit (their CPU leaves the sum with them)
    finally:
        for conn in conns:
            await conn.close()
        cleanup = await asyncpg.connect(owner)
        try:  # the ceiling's scratch rows must not be vacuumed and checkpointed during the next figure
            await cleanup.execute("DROP TABLE IF EXISTS bench_raw")
        finally:
            await cleanup.close()
    if copied >= len(chunks) * 1000:
        print("   (raw COPY ran out of pre-built rows before the deadline; its rate is still per second)")
    return copied, elapsed, {k: after[k] - before[k] for k in before}


async def lean_copy(
    stack: Stack, chunks: list[bytes], tenant_id: uuid.UUID, *, duration: float, meter: CPUMeter | None = None
) -> tuple[int, float, dict[str, float]]:
    """The ceiling of issue 13: the same rows, raw asyncpg ``COPY`` on ONE connection in 1,000-row batches (each
    its own transaction) into a table list-partitioned by tenant with only its primary key ``(tenant_id, id)``
    and one ``(tenant_id, "timestamp" DESC, id DESC)`` index. Returns (rows, seconds, CPU seconds of the metered
    processes while the connection was open)."""
    owner = stack.url(OWNER_ROLE, driver="postgresql")
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_lean")
        await conn.execute("CREATE TABLE bench_lean (LIKE audit_logs INCLUDING DEFAULTS) PARTITION BY LIST (tenant_id)")
        await conn.execute(f"CREATE TABLE bench_lean_t PARTITION OF bench_lean FOR VALUES IN ('{tenant_id}')")
        await conn.execute("ALTER TABLE bench_lean ADD PRIMARY KEY (tenant_id, id)")
        await conn.execute('CREATE INDEX bench_lean_time ON bench_lean (tenant_id, "timestamp" DESC, id DESC)')
        copied = 0
        before = meter.sample() if meter else {}
        start = time.perf_counter()
        deadline = start + duration
        for chunk in chunks:
            if time.perf_counter() >= deadline:
                break
            await conn.copy_to_table("bench_lean", source=io.BytesIO(chunk), columns=RAW_COLUMNS, format="csv")
            copied += 1000
        elapsed = time.perf_counter() - start
        after = meter.sample() if meter else {}
        await conn.execute("DROP TABLE bench_lean")  # not vacuumed or checkpointed during the next figure
    finally:
        await conn.close()
    if copied >= len(chunks) * 1000:
        print("   (lean COPY ran out of pre-built rows before the deadline; its rate is still per second)")
    return copied, elapsed, {k: after[k] - before[k] for k in before}


# -- bulk synthetic rows for the 10M figure ---------------------------------------------------------
async def synthesize(stack: Stack, tenant_id: uuid.UUID, target: int) -> None:
    """Fill the tenant to ``target`` rows with SQL-generated events (no metadata payload; messages of ten
    :data:`WORDS` and now and then one of :data:`RARE_WORDS`, as :func:`make_event` writes them).

    Loading millions of rows into a table with a dozen indexes is bound by WAL: every checkpoint makes the
    next change of each index page write the whole page again. For the load only, on the bench's own embedded
    server, checkpoints are spaced out (``max_wal_size``, ``checkpoint_timeout``; reset before anything is
    measured), and each batch is inserted in time order, so the primary key and the time-ordered indexes
    fill page by page.
    """
    owner = stack.url(OWNER_ROLE, driver="postgresql")
    async with spaced_checkpoints(stack):
        conn = await asyncpg.connect(owner)
        try:
            await _synthesize_rows(conn, tenant_id, target)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def spaced_checkpoints(stack: Stack) -> AsyncIterator[None]:
    """Checkpoints far apart while inside, on the bench's own embedded server only (a server given through
    ``AUDIT_BENCH_ADMIN_URL`` keeps its configuration untouched)."""
    if stack.embedded is None:
        yield
        return
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute("ALTER SYSTEM SET max_wal_size = '4GB'")  # the disk is shared: bounded
        await admin.execute("ALTER SYSTEM SET checkpoint_timeout = '1h'")
        await admin.execute("SELECT pg_reload_conf()")
        yield
    finally:
        await admin.execute("ALTER SYSTEM RESET max_wal_size")
        await admin.execute("ALTER SYSTEM RESET checkpoint_timeout")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()


async def _synthesize_rows(conn: asyncpg.Connection, tenant_id: uuid.UUID, target: int) -> None:
    have = await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", tenant_id)
    await conn.execute("SELECT auditlog_ensure_partitions($1, (now() - interval '400 days')::date, 15)", tenant_id)
    step = 500_000
    while have < target:
        n = min(step, target - have)
        start = await conn.fetchval(
            "UPDATE tenant_log_seq SET last_seq = last_seq + $2 WHERE tenant_id = $1 RETURNING last_seq - $2",
            tenant_id, n,
        )  # fmt: skip
        await conn.execute(
            """
            WITH rows AS (
              SELECT g, ts, array_to_string(ARRAY(
                  SELECT ($4::text[])[1 + (h / (14::bigint ^ k)::bigint) % 14] FROM generate_series(0, 9) AS k
                ), ' ') || CASE WHEN g % $6 < 3 THEN ' ' || ($5::text[])[1 + g % $6] ELSE '' END AS message
              FROM (SELECT g, now() - (random() * interval '365 days') AS ts, (random() * 1e15)::bigint AS h
                    FROM generate_series(1, $3) AS g) AS drawn
            )
            INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type, resource_id,
              user_id, session_id, severity, ip_address, message, search)
            SELECT $1, ts, gen_random_uuid(), $2 + g,
              (ARRAY['CREATE','READ','VIEW','UPDATE','DELETE','LOGIN'])[1 + (g % 6)],
              CASE WHEN g % 21 = 0 THEN 'document' ELSE 'resource_' || (g % 20) END,
              'res-' || (g % 100000), 'user-' || (g % 500), 'sess-' || (g % 5000),
              (ARRAY['INFO','INFO','INFO','INFO','INFO','INFO','INFO','WARNING','ERROR','CRITICAL'])[1 + (g % 10)],
              ('10.0.' || (g % 250) || '.' || (1 + g % 250))::inet,
              message, to_tsvector('simple', message)
            FROM rows ORDER BY ts
            """,
            tenant_id, start, n, WORDS, list(RARE_WORDS), RARE_EVERY,
        )  # fmt: skip
        have += n
        print(f"    … {have:,} rows", flush=True)
    await conn.execute("ANALYZE audit_logs")


def page_urls(now: datetime, count: int = 64, span_days: int = 60) -> list[str]:
    rng = random.Random(7)
    urls = []
    for _ in range(count):
        end = now - timedelta(days=rng.uniform(0, span_days - 2))
        start = end - timedelta(days=2)
        q = (
            f"severity=ERROR&resource_type=document&start_time={start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            f"&end_time={end.strftime('%Y-%m-%dT%H:%M:%SZ')}&limit=50"
        )
        urls.append(f"/api/v1/logs?{q}")
    return urls


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per HTTP figure (medians are reported)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Granian workers for the API and the hello app (default 1, as AUDIT_WORKERS; see the README)",
    )
    parser.add_argument(
        "--phases",
        default="bulk,single,page",
        help="comma-separated subset of bulk,single,page (default: all three)",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the tenant for the page figure")
    parser.add_argument("--big", type=int, default=0, help="also measure the pages at this many events (e.g. 10M)")
    parser.add_argument(
        "--big-only", action="store_true", help="with --big: skip the pages at --events, measure only the big ones"
    )
    parser.add_argument("--paced-duration", type=int, default=20, help="seconds per paced page run")
    parser.add_argument(
        "--ab",
        metavar="REVISION",
        help="bulk figure: every round also with the schema downgraded to REVISION (an A/B of a migration)",
    )
    parser.add_argument(
        "--no-saturated", action="store_true", help="skip the saturated page and its hello-world GET ceiling"
    )
    args = parser.parse_args()
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = phases - {"bulk", "single", "page"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a TERM still stops the servers (finally below)
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-"))
    stack = Stack(workdir, args.workers)
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "workers": args.workers}
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        env = stack.api_env()
        subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        port = stack.serve("app.asgi:create_app_from_env", env)
        base = f"http://127.0.0.1:{port}"
        tid, token = asyncio.run(writer_token(base))
        tenant_id = uuid.UUID(tid)

        if "bulk" in phases:
            bulk_phase(stack, base, token, tenant_id, args, results)
        if "single" in phases:
            single_phase(stack, base, token, workdir, args, results)
        if "page" in phases:
            page_phase(stack, base, token, tenant_id, workdir, args, results)
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)  # the database of a 10M run is several GB
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def bulk_phase(
    stack: Stack, base: str, token: str, tenant_id: uuid.UUID, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    print("1. bulk ingest: 4 clients x 1,000-event batches with metadata")
    probe = cpu_probe()
    events = list(batches(40, 1000, seed=1))
    bodies = [json.dumps(b).encode() for b in events]
    asyncio.run(bulk_load(base, token, bodies[:2], clients=2, duration=None, total=2000))  # warm-up
    chunks = raw_csv_chunks(events, tenant_id, count=60 * args.duration * 2)
    meter = CPUMeter(api=stack.procs[0].pid, postgres=stack.embedded.pid if stack.embedded is not None else None)
    # With --ab REV every round runs twice: with the migrations' head, then downgraded to REV (an A/B of a
    # schema change, e.g. the index set, at the same moment of the machine); the database ends at head.
    states = ["head", args.ab] if args.ab else ["head"]
    runs: dict[str, list[dict[str, float]]] = {state: [] for state in states}
    owner = stack.url(OWNER_ROLE)
    try:
        for _ in range(args.rounds):  # API and ceilings alternate; medians of the rounds
            for state in states:
                if len(states) > 1:
                    (migrate.upgrade if state == "head" else migrate.downgrade)(owner, state)
                runs[state].append(bulk_round(stack, base, token, tenant_id, bodies, chunks, meter, args, state))
    finally:
        if len(states) > 1:
            migrate.upgrade(owner, "head")
    for state in states:
        med = median_run(runs[state])  # each figure's own median; the ratios are medians of the rounds' ratios
        api_rate, raw_rate, lean_rate = med["api"], med["raw"], med["lean"]
        key = "bulk" if state == "head" else f"bulk_at_{state}"
        results[key] = {
            "runs_ratio_lean": [round(run["ratio_lean"], 3) for run in runs[state]],
            "cpu_us_per_event": {k: round(v) for k, v in med.items() if k.endswith("_cpu_us")},
            "load_average": os.getloadavg()[0],
            "api_events_s": round(api_rate),
            "raw_copy_events_s": round(raw_rate),
            "ratio": round(med["ratio_raw"], 3),
            "lean_copy_events_s": round(lean_rate),
            "ratio_lean": round(med["ratio_lean"], 3),
            "target": "≥ 0.30 of the lean ceiling",
            "cpu_probe_ms": probe,
        }
        print(
            f"   [{state}] API {api_rate:,.0f} events/s · raw COPY (4 connections, audit_logs' indexes)"
            f" {raw_rate:,.0f} rows/s: ratio {med['ratio_raw']:.3f} · lean COPY (1 connection, PK + time index)"
            f" {lean_rate:,.0f} rows/s: ratio {med['ratio_lean']:.3f} (target ≥ 0.30; medians of"
            f" {len(runs[state])} rounds, the ratios of each round's own) · probe {probe} ms"
        )


def bulk_round(
    stack: Stack,
    base: str,
    token: str,
    tenant_id: uuid.UUID,
    bodies: list[bytes],
    chunks: list[bytes],
    meter: CPUMeter,
    args: argparse.Namespace,
    state: str,
) -> dict[str, float]:
    """One round: the API's bulk ingest, then the two ceilings, each for ``args.duration`` seconds."""

    async def api() -> tuple[int, float, dict[str, float]]:
        before = meter.sample()
        n, seconds = await bulk_load(base, token, bodies, clients=4, duration=args.duration)
        after = meter.sample()
        return n, seconds, {k: after[k] - before[k] for k in before}

    run: dict[str, float] = {}
    for name, job in (
        ("api", api),
        ("raw", lambda: raw_copy(stack, chunks, clients=4, duration=args.duration, meter=meter)),
        ("lean", lambda: lean_copy(stack, chunks, tenant_id, duration=args.duration, meter=meter)),
    ):
        n, seconds, cpu = asyncio.run(job())
        run[name] = n / seconds
        for proc, used in cpu.items():  # CPU per event moves far less with the machine's other load than events/s
            run[f"{name}_{proc}_cpu_us"] = used / max(n, 1) * 1e6
    run["ratio_lean"] = run["api"] / run["lean"]
    run["ratio_raw"] = run["api"] / run["raw"]
    pg = "postgres_cpu_us"
    print(
        f"   round [{state}]: API {run['api']:,.0f}/s · raw {run['raw']:,.0f}/s · lean {run['lean']:,.0f}/s"
        f" · API/lean {run['ratio_lean']:.3f} · CPU µs per event: API process {run['api_api_cpu_us']:.0f},"
        f" PostgreSQL {run.get('api_' + pg, 0):.0f} (raw {run.get('raw_' + pg, 0):.0f},"
        f" lean {run.get('lean_' + pg, 0):.0f}) · load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return run


def single_phase(
    stack: Stack, base: str, token: str, workdir: Path, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    print("2. single-event POST, 64 connections")
    asyncio.run(settle(stack))  # not the checkpoint and autovacuum owed to the bulk figure's rows
    probe = cpu_probe()
    body = json.dumps(make_event(random.Random(3), datetime.now(UTC))).encode()
    post_lua = lua_post(workdir / "post.lua", token, body)
    hello_port = stack.serve("bench.hello_app:create_app", dict(os.environ))
    api_runs, hello_runs = [], []
    warm_up(f"{base}/api/v1/logs", connections=64, script=post_lua)
    warm_up(f"http://127.0.0.1:{hello_port}/api/v1/logs", connections=64, script=post_lua)
    try:  # alternate the two servers (each idle while the other runs); medians of the rounds
        for _ in range(args.rounds):
            api_runs.append(wrk(f"{base}/api/v1/logs", connections=64, duration=args.duration, script=post_lua))
            hello_runs.append(
                wrk(f"http://127.0.0.1:{hello_port}/api/v1/logs", connections=64, duration=args.duration,
                    script=post_lua)
            )  # fmt: skip
    finally:
        hello_proc = stack.procs.pop()
        hello_proc.send_signal(signal.SIGINT)
        hello_proc.wait(timeout=20)
    api, hello = median_run(api_runs), median_run(hello_runs)
    results["single"] = {
        "api_rps": round(api["rps"]),
        "hello_rps": round(hello["rps"]),
        "ratio": round(api["rps"] / hello["rps"], 3),
        "p50_ms": api["p50"],
        "p99_ms": api["p99"],
        "non_2xx": api["non2xx"],
        "target": "≥ 0.25, p99 ≤ 100 ms",
        "cpu_probe_ms": probe,
    }
    print(
        f"   API {api['rps']:,.0f} req/s (p50 {api['p50']:.1f} ms, p99 {api['p99']:.1f} ms, non-2xx "
        f"{api['non2xx']:.0f}) · hello {hello['rps']:,.0f} req/s · ratio {api['rps'] / hello['rps']:.3f}"
        f" · probe {probe} ms"
    )


PACED_DELAY_MS = 75
"""wrk's ``delay`` between a connection's response and its next request: 16 connections then send ~200 req/s."""


def page_sets(now: datetime) -> dict[str, list[str]]:
    """The four pages of the read target (issue 13) and ``FRESH_RARE``, each as a set of URLs wrk picks from at
    random."""
    rng = random.Random(8)
    return {
        "two filters, 2-day window": page_urls(now),
        "user_id alone": [f"/api/v1/logs?user_id=user-{i}&limit=50" for i in rng.sample(range(1, 501), 64)],
        "q, a rare word": [f"/api/v1/logs?q={w}&limit=50" for w in RARE_WORDS],
        "q, a word in most events": [f"/api/v1/logs?q={w}&limit=50" for w in WORDS],
        FRESH_RARE: [f"/api/v1/logs?q={w}&limit=50" for w in RARE_WORDS],
    }


FRESH_RARE = "q, a rare word, a new search each time"
"""Beside the target's four: the rare word as the first page of a search the API has not seen (see ``lua_get``):
the repeated one above is mostly answered from the GIN index straight away, this one walks first every time."""


def page_phase(
    stack: Stack,
    base: str,
    token: str,
    tenant_id: uuid.UUID,
    workdir: Path,
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    print(f"3. pages after {args.events:,} events")
    have = asyncio.run(count_events(stack, tenant_id))
    need = max(0, args.events - have)
    if need:
        load_bodies = [json.dumps(b).encode() for b in batches(60, 1000, seed=11)]
        n, s = asyncio.run(bulk_load(base, token, load_bodies, clients=4, duration=None, total=need))
        print(f"   loaded {n:,} events through the API in {s:.0f} s ({n / s:,.0f}/s)")
    asyncio.run(settle(stack))
    if not (args.big and args.big_only):
        results["page"] = {"events": args.events, **measure_pages(stack, base, token, workdir, args)}

    if args.big:
        print(f"3b. pages after {args.big:,} events (synthetic rows via SQL)")
        asyncio.run(synthesize(stack, tenant_id, args.big))
        asyncio.run(settle(stack))
        results["page_big"] = {"events": args.big, **measure_pages(stack, base, token, workdir, args)}


def measure_pages(stack: Stack, base: str, token: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The saturated two-filter page beside the hello-world GET, then the pages of ``page_sets`` at the paced
    load."""
    sets = page_sets(datetime.now(UTC))
    out: dict[str, Any] = {}
    if not args.no_saturated:
        out["saturated"] = measure_saturated(stack, base, workdir, token, sets["two filters, 2-day window"], args)
    paced: dict[str, Any] = {}
    for name, urls in sets.items():
        lua = lua_get(workdir / "paced.lua", token, urls, delay_ms=PACED_DELAY_MS, fresh=name == FRESH_RARE)
        paced[name] = measure_paced(stack, base, lua, args, name=name)
    out["paced"] = paced
    return out


def measure_saturated(
    stack: Stack, base: str, workdir: Path, token: str, urls: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """The two-filter page with 16 connections always in flight (the throughput), beside a hello-world GET on
    the same Granian settings (its ceiling), alternating; medians of ``args.rounds`` runs."""
    meter = CPUMeter(api=stack.procs[0].pid, postgres=stack.embedded.pid if stack.embedded is not None else None)
    get_lua = lua_get(workdir / "get.lua", token, urls)
    hello_port = stack.serve("bench.hello_app:create_app", dict(os.environ))
    hello_url = f"http://127.0.0.1:{hello_port}/"
    probe = cpu_probe()
    load = os.getloadavg()[0]
    warm_up(f"{base}/", connections=16, script=get_lua)
    warm_up(hello_url, connections=16, script=get_lua)
    runs, hello_runs = [], []
    try:
        for _ in range(args.rounds):
            runs.append(wrk_metered(meter, f"{base}/", connections=16, duration=args.duration, script=get_lua))
            hello_runs.append(wrk(hello_url, connections=16, duration=args.duration, script=get_lua))
    finally:
        hello_proc = stack.procs.pop()
        hello_proc.send_signal(signal.SIGINT)
        hello_proc.wait(timeout=20)
    page, hello = median_run(runs), median_run(hello_runs)
    out: dict[str, Any] = {
        "rps": round(page["rps"]),
        "hello_get_rps": round(hello["rps"]),
        "ratio": round(page["rps"] / hello["rps"], 3),
        "p50_ms": page["p50"],
        "p99_ms": page["p99"],
        "non_2xx": page["non2xx"],
        "api_cpu_us_per_page": round(page["api_cpu_us"]),
        "cpu_probe_ms": probe,
        "load_average": load,
    }
    cpu = f"API {out['api_cpu_us_per_page']} µs"
    if "postgres_cpu_us" in page:
        out["postgres_cpu_us_per_page"] = round(page["postgres_cpu_us"])
        cpu += f", PostgreSQL {out['postgres_cpu_us_per_page']} µs"
    print(
        f"   saturated (16 connections always in flight), two filters + 2-day window: {page['rps']:,.0f} req/s"
        f" (p50 {page['p50']:.1f} ms, p99 {page['p99']:.1f} ms) · hello-world GET {hello['rps']:,.0f} req/s ·"
        f" ratio {out['ratio']:.3f} · CPU per page: {cpu} · probe {probe} ms · load {load:.1f}",
        flush=True,
    )
    return out


def measure_paced(stack: Stack, base: str, lua: Path, args: argparse.Namespace, *, name: str) -> dict[str, Any]:
    """One page at the paced load (16 connections, each waiting ``PACED_DELAY_MS`` after every response):
    warm-up, then ``args.rounds`` runs of ``args.paced_duration`` seconds; the median p99 and every run's."""
    meter = CPUMeter(api=stack.procs[0].pid, postgres=stack.embedded.pid if stack.embedded is not None else None)
    warm_up(f"{base}/", connections=16, script=lua)
    load = os.getloadavg()[0]
    runs = [
        wrk_metered(meter, f"{base}/", connections=16, duration=args.paced_duration, script=lua)
        for _ in range(args.rounds)
    ]
    page = median_run(runs)
    out: dict[str, Any] = {
        "rps": round(page["rps"]),
        "p50_ms": page["p50"],
        "p99_ms": page["p99"],
        "runs_p99_ms": [run["p99"] for run in runs],
        "non_2xx": page["non2xx"],
        "timeouts": page["timeouts"],
        "api_cpu_us_per_page": round(page["api_cpu_us"]),
        "postgres_cpu_us_per_page": round(page.get("postgres_cpu_us", 0)),
        "load_average": load,
        "target_p99_ms": 25,
    }
    verdict = "✔" if page["p99"] <= 25 else "✘"
    print(
        f"   paced ~200 req/s, {name}: {page['rps']:,.0f} req/s · p50 {page['p50']:.1f} ms · p99 {page['p99']:.1f} ms"
        f" {verdict} (runs {', '.join(f'{p:.1f}' for p in out['runs_p99_ms'])}; non-2xx {page['non2xx']:.0f},"
        f" timeouts {page['timeouts']:.0f})"
        f" · CPU per page: API {out['api_cpu_us_per_page']} µs, PostgreSQL {out['postgres_cpu_us_per_page']} µs"
        f" · load {load:.1f}",
        flush=True,
    )
    return out


async def count_events(stack: Stack, tenant_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", tenant_id))
    finally:
        await conn.close()


async def settle(stack: Stack) -> None:
    """After a bulk load: VACUUM ANALYZE and a CHECKPOINT, so the read figures measure the steady state and
    not autovacuum and the checkpointer catching up with the rows just written."""
    conn = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        await conn.execute("VACUUM (ANALYZE) audit_logs")
    finally:
        await conn.close()
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()


def warm_up(url: str, *, connections: int, script: Path) -> None:
    """A short run that is not counted: prepared statements, caches and connections exist before measuring."""
    wrk(url, connections=connections, duration=3, script=script)


if __name__ == "__main__":
    main()
