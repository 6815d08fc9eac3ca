"""What each index of ``audit_logs`` costs at ingest, and what each filter's page costs without it (issue 13).

    uv run --frozen python bench/bench_indexes.py                     # 1M events, both phases
    uv run --frozen python bench/bench_indexes.py --phases pages      # one phase (pages, ingest)
    uv run --frozen python bench/bench_indexes.py --events 10000000   # at 10M (slow to load)

Run on demand, never in CI. Its own embedded PostgreSQL (``bench.Stack``); one tenant made through the API (which
is then stopped), filled with ``--events`` :func:`bench.make_event` events (60 days, the bulk figure's rows: the
``search`` value as ``db.blind_index`` writes it, a random payload the size of the ciphertext) by COPY into a
staging table and ``INSERT .. SELECT`` in generation order (so the heap is not in time order, as after the API's
bulk figure). The index set is whatever the migrations made; the phases change it only temporarily and put it
back.

``pages``: each filter's page (``app.logs.query.build_list_sql``, ``limit=50``, as the API role with the tenant
bound, on one connection with the read pool's settings, so prepared statements and plan caching behave as in
the API) with a random 2-day window and without one, timed from the client over ``--page-runs`` executions with
varying values, after 5 uncounted ones: first with every index, then with the filter's own index(es) dropped,
then with every single-filter B-tree dropped, then with ``--candidate`` index sets (created for the run, dropped
after). The plan's index names are printed beside each figure.

``ingest``: per variant index set, a scratch table list-partitioned by tenant, pre-filled with the tenant's
events, then ``CHECKPOINT`` and ``--copy-rows`` new rows COPYed on one connection in 1,000-row transactions (the
lean ceiling's method): rows/s, PostgreSQL CPU µs per row (every process of the server) and WAL bytes per row
(full-page images after the checkpoint included). Variants: the base (the primary key and the partial time
indexes of migration 0019, which every event needs), the base plus each other index alone, the whole current
set, and the candidates. CPU and WAL per row move far less with the machine's other load than rows/s;
``--rounds`` alternates the variants.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app.logs.prepare import new_event_id  # noqa: E402
from app.logs.query import build_list_sql  # noqa: E402
from bench import (  # noqa: E402
    RAW_COLUMNS,
    CPUMeter,
    Stack,
    make_event,
    search_vector,
    settle,
    spaced_checkpoints,
    writer_token,
)
from db.event_filters import LogFilters  # noqa: E402
from db.provision import API_ROLE, OWNER_ROLE  # noqa: E402

SPAN_DAYS = 60
FILTER_INDEXES = {
    "ix_audit_logs_user": "user_id",
    "ix_audit_logs_action": "action",
    "ix_audit_logs_resource_type": "resource_type",
    "ix_audit_logs_resource_severity": "resource_type + severity",
    "ix_audit_logs_severity": "severity",
    "ix_audit_logs_resource_id": "resource_id",
    "ix_audit_logs_session": "session_id",
    "ix_audit_logs_request": "request_id",
    "ix_audit_logs_ip": "ip_address",
    "ix_audit_logs_filters": "the GIN over the filter columns (migration 0017)",
}
"""The single-filter B-trees (migrations 0001 and 0005) and the filter each serves."""

_GIN_ALL = "action, resource_type, severity, resource_id, session_id, request_id, ip_address"
_GIN_RARE = "resource_id, session_id, request_id, ip_address"
CANDIDATES: dict[str, list[str]] = {
    # One GIN (btree_gin operator classes) over the filter columns instead of their B-trees: a rare value is
    # found through it, a common one by walking the time order. user_id keeps its B-tree in every set (a page of
    # one user must not read all of that user's events to sort them).
    "gin": ["ix_audit_logs_user", f"CREATE INDEX bx_filters ON audit_logs USING gin ({_GIN_ALL})"],
    "gin_nofastupdate": [
        "ix_audit_logs_user",
        f"CREATE INDEX bx_filters ON audit_logs USING gin ({_GIN_ALL}) WITH (fastupdate = off)",
    ],
    # Only the columns whose values are rare (a page cannot find them by walking the time order).
    "gin_rare": ["ix_audit_logs_user", f"CREATE INDEX bx_filters ON audit_logs USING gin ({_GIN_RARE})"],
    # The GIN, and the (resource_type, severity, "timestamp", id) B-tree for the two-filter page.
    "gin_rs": [
        "ix_audit_logs_user",
        "ix_audit_logs_resource_severity",
        f"CREATE INDEX bx_filters ON audit_logs USING gin ({_GIN_ALL})",
    ],
    # The filter indexes as they were before migration 0017 (to compare with the set of the migrations' head).
    "before_0017": [
        'CREATE INDEX bx_user ON audit_logs (user_id, "timestamp", id)',
        'CREATE INDEX bx_action ON audit_logs (action, "timestamp", id)',
        'CREATE INDEX bx_resource_type ON audit_logs (resource_type, "timestamp", id)',
        'CREATE INDEX bx_resource_severity ON audit_logs (resource_type, severity, "timestamp", id)',
        'CREATE INDEX bx_severity ON audit_logs (severity, "timestamp", id)',
        'CREATE INDEX bx_resource_id ON audit_logs (resource_id, "timestamp", id) WHERE resource_id IS NOT NULL',
        'CREATE INDEX bx_session ON audit_logs (session_id, "timestamp", id) WHERE session_id IS NOT NULL',
        'CREATE INDEX bx_request ON audit_logs (request_id, "timestamp", id) WHERE request_id IS NOT NULL',
        'CREATE INDEX bx_ip ON audit_logs (ip_address, "timestamp", id) WHERE ip_address IS NOT NULL',
    ],
    "brin_time": ['CREATE INDEX bx_brin_time ON audit_logs USING brin ("timestamp")'],
    "brin_seq": ["CREATE INDEX bx_brin_seq ON audit_logs USING brin (seq)"],
}
"""Index sets tried beside the migrations' (created for the run, dropped after): statements, or the names of
indexes of the migrations to keep."""


def _statements(candidate: list[str], defs: dict[str, str]) -> list[str]:
    return [defs.get(item, item) for item in candidate]


# -- setup ------------------------------------------------------------------------------------------
def event_row(e: dict[str, Any], tenant_id: uuid.UUID, seq: int) -> list[Any]:
    payload = os.urandom(len(json.dumps(e["metadata"])) + 17 + 28)
    return [
        tenant_id, e["timestamp"], new_event_id(), seq, datetime.now(UTC).isoformat(), e["action"],
        e["resource_type"], e["resource_id"], e["user_id"], e["session_id"], e["request_id"], e["severity"],
        e["ip_address"], e["user_agent"], e["message"], "\\x" + payload.hex(), search_vector(e),
    ]  # fmt: skip


def csv_rows(rng: random.Random, now: datetime, tenant_id: uuid.UUID, first_seq: int, count: int) -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf)
    for i in range(count):
        out.writerow(event_row(make_event(rng, now, SPAN_DAYS), tenant_id, first_seq + i))
    return buf.getvalue().encode()


async def load_events(stack: Stack, tenant_id: uuid.UUID, events: int, now: datetime) -> None:
    owner = stack.url(OWNER_ROLE, driver="postgresql")
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute(
            "SELECT auditlog_ensure_partitions($1, ($2::timestamptz - interval '90 days')::date, 5)", tenant_id, now
        )
        have = int(await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", tenant_id))
        if have >= events:
            return
        await conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_stage (LIKE audit_logs INCLUDING DEFAULTS)")
        rng = random.Random(21)
        step = 50_000
        start = time.perf_counter()
        async with spaced_checkpoints(stack):
            while have < events:
                n = min(step, events - have)
                data = csv_rows(rng, now, tenant_id, have + 1, n)
                await conn.copy_to_table("bench_stage", source=io.BytesIO(data), columns=RAW_COLUMNS, format="csv")
                await conn.execute("INSERT INTO audit_logs SELECT * FROM bench_stage")
                await conn.execute("TRUNCATE bench_stage")
                have += n
                print(f"    … {have:,} events ({have / (time.perf_counter() - start):,.0f}/s)", flush=True)
        await conn.execute("DROP TABLE bench_stage")
        await conn.execute("UPDATE tenant_log_seq SET last_seq = $2 WHERE tenant_id = $1", tenant_id, have)
        await conn.execute(
            "UPDATE audit_logs SET action = $2 WHERE tenant_id = $1 AND seq % 10007 = 0", tenant_id, RARE_ACTION
        )
    finally:
        await conn.close()
    await settle(stack)  # VACUUM (ANALYZE) and a CHECKPOINT


async def index_defs(conn: asyncpg.Connection) -> dict[str, str]:
    """The parent indexes of ``audit_logs`` (name → a CREATE INDEX that builds it on every partition)."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'audit_logs'::regclass ORDER BY c.relname"
    )
    return {
        name: definition.replace(" ON ONLY ", " ON ").replace(" public.audit_logs ", " audit_logs ")
        for name, definition in rows
    }


# -- pages ------------------------------------------------------------------------------------------
class Sample:
    """Values that exist in the tenant (request ids and IP addresses are nearly unique)."""

    def __init__(self, request_ids: list[str], ips: list[str]) -> None:
        self.request_ids = request_ids
        self.ips = ips
        self.timed = False
        """Set once the uncounted runs of a page are done."""


RARE_ACTION = "PURGE"
"""Given to ~100 events after the load: a value a page cannot find by walking the time order."""
PageMaker = Callable[[random.Random, Sample], dict[str, Any]]
PAGES: dict[str, PageMaker] = {
    # The same statement as "action" (one prepared statement, as in the API's connections), timed with a rare
    # value after the 5 uncounted runs with common ones: a plan cached for common values would walk the whole
    # tenant here.
    "action (rare, after common)": lambda r, s: {"action": (RARE_ACTION if s.timed else r.choice(["VIEW", "READ"]),)},
    "resource_type + severity": lambda r, s: {"resource_type": ("document",), "severity": ("ERROR",)},
    "user_id": lambda r, s: {"user_id": (f"user-{r.randint(1, 500)}",)},
    "action": lambda r, s: {"action": (r.choice(["DELETE", "EXPORT", "LOGIN"]),)},
    "resource_type": lambda r, s: {"resource_type": (f"resource_{r.randint(0, 19)}",)},
    "severity": lambda r, s: {"severity": ("CRITICAL",)},
    "resource_id": lambda r, s: {"resource_id": f"res-{r.randint(1, 100_000)}"},
    "session_id": lambda r, s: {"session_id": f"sess-{r.randint(1, 5000)}"},
    "request_id": lambda r, s: {"request_id": r.choice(s.request_ids)},
    "ip_address": lambda r, s: {"ip_address": r.choice(s.ips)},
}
PAGE_OF_INDEX = {
    "ix_audit_logs_user": ["user_id"],
    "ix_audit_logs_action": ["action", "action (rare, after common)"],
    "ix_audit_logs_resource_type": ["resource_type"],
    "ix_audit_logs_resource_severity": ["resource_type + severity"],
    "ix_audit_logs_severity": ["severity"],
    "ix_audit_logs_resource_id": ["resource_id"],
    "ix_audit_logs_session": ["session_id"],
    "ix_audit_logs_request": ["request_id"],
    "ix_audit_logs_ip": ["ip_address"],
}


def _filters(values: dict[str, Any], window: tuple[datetime, datetime] | None) -> LogFilters:
    if window is not None:
        values = {**values, "start_time": window[0], "end_time": window[1]}
    return LogFilters(**values)


async def index_parents(conn: asyncpg.Connection) -> dict[str, str]:
    """Every partition's index name → the name of the ``audit_logs`` index it belongs to."""
    rows = await conn.fetch(
        "SELECT c.relname, (SELECT a.relid::regclass::text FROM pg_partition_ancestors(c.oid) WITH ORDINALITY"
        "  AS a(relid, n) ORDER BY a.n DESC LIMIT 1) AS top"
        " FROM pg_class c WHERE c.relkind IN ('i', 'I') AND c.relispartition"
    )
    return {r["relname"]: r["top"] for r in rows if r["top"]}


def _plan_indexes(plan: Any, parents: dict[str, str]) -> list[str]:
    """What a plan reads: ``Index:<name>`` / ``Bitmap:<name>`` per index (by the ``audit_logs`` index's name),
    ``Seq`` for a sequential scan."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Index Name")
        kind = node.get("Node Type", "")
        if name:
            short = "Bitmap" if kind.startswith("Bitmap") else "Index"
            found.append(f"{short}:{parents.get(name, name).removeprefix('ix_audit_logs_')}")
        elif kind == "Seq Scan":  # the tenant's default partition is empty here: told apart
            found.append("Seq(default)" if node.get("Relation Name", "").endswith("_default") else "Seq")
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(set(found))


async def api_connection(stack: Stack, tenant_id: uuid.UUID) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        stack.url(API_ROLE, driver="postgresql"),
        server_settings={"default_transaction_read_only": "on", "statement_timeout": "60000"},
    )
    await conn.execute("SELECT set_config('auditlog.tenant_id', $1, false)", str(tenant_id))
    return conn


async def time_page(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    make: PageMaker,
    sample: Sample,
    parents: dict[str, str],
    *,
    windowed: bool,
    runs: int,
) -> dict[str, Any]:
    """Client-side milliseconds of ``runs`` executions (after 5 uncounted), each with other values."""
    rng = random.Random(5)
    now = datetime.now(UTC)
    times: list[float] = []
    plans: list[str] = []
    for i in range(5 + runs):
        sample.timed = i >= 5
        window = None
        if windowed:
            end = now - timedelta(days=rng.uniform(0, SPAN_DAYS - 2))
            window = (end - timedelta(days=2), end)
        sql, args = build_list_sql(tenant_id, _filters(make(rng, sample), window), after=None, limit=50)
        if i == 5:  # the plan of the first timed run (a custom plan: EXPLAIN is planned on its own)
            explain = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            plans = _plan_indexes(json.loads(explain), parents)
        start = time.perf_counter()
        await conn.fetch(sql, *args)
        if i >= 5:
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(len(times) * 0.9) - 1], 2),
        "max_ms": round(times[-1], 2),
        "plan": plans,
    }


async def page_table(
    stack: Stack, tenant_id: uuid.UUID, sample: Sample, pages: list[str], runs: int, label: str
) -> dict[str, Any]:
    owner = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        parents = await index_parents(owner)
    finally:
        await owner.close()
    conn = await api_connection(stack, tenant_id)  # a new connection: no plan cached from another index set
    out: dict[str, Any] = {}
    try:
        for page in pages:
            row = {}
            for windowed in (True, False):
                row["2-day window" if windowed else "no window"] = await time_page(
                    conn, tenant_id, PAGES[page], sample, parents, windowed=windowed, runs=runs
                )
            out[page] = row
            w, n = row["2-day window"], row["no window"]
            print(
                f"   [{label}] {page:26} 2-day window: median {w['median_ms']:7.2f} ms, max {w['max_ms']:7.2f}"
                f" {'+'.join(w['plan'])} · no window: median {n['median_ms']:7.2f} ms, max {n['max_ms']:7.2f}"
                f" {'+'.join(n['plan'])} · load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        await conn.close()
    return out


@contextlib.asynccontextmanager
async def without(conn: asyncpg.Connection, names: list[str], defs: dict[str, str]) -> Any:
    """The indexes ``names`` dropped while inside (rebuilt after)."""
    for name in names:
        await conn.execute(f"DROP INDEX {name}")
    try:
        yield
    finally:
        for name in names:
            await conn.execute(defs[name])


@contextlib.asynccontextmanager
async def with_candidate(conn: asyncpg.Connection, statements: list[str]) -> Any:
    made = []
    try:
        for statement in statements:
            await conn.execute(statement)
            made.append(statement.split()[2])
        await conn.execute("ANALYZE audit_logs")
        yield
    finally:
        for name in made:
            await conn.execute(f"DROP INDEX IF EXISTS {name}")


async def pages_phase(stack: Stack, tenant_id: uuid.UUID, args: argparse.Namespace, results: dict[str, Any]) -> None:
    owner = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        await owner.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        defs = await index_defs(owner)
        rows = await owner.fetch(
            "SELECT request_id, host(ip_address) AS ip FROM audit_logs WHERE tenant_id = $1 LIMIT 2000", tenant_id
        )
        sample = Sample([r["request_id"] for r in rows], [r["ip"] for r in rows])
        pages = list(PAGES)
        out: dict[str, Any] = {}
        print(f"pages at {args.events:,} events, every index of the migrations")
        out["all"] = await page_table(stack, tenant_id, sample, pages, args.page_runs, "all")
        if not args.only_candidates:
            print("pages without their own index")
            own: dict[str, Any] = {}
            for index, served in PAGE_OF_INDEX.items():
                if index not in defs:
                    continue
                async with without(owner, [index], defs):
                    own.update(await page_table(stack, tenant_id, sample, served, args.page_runs, f"-{index}"))
            out["without_own"] = own
        present = [name for name in FILTER_INDEXES if name in defs]
        async with without(owner, present, defs):
            if not args.only_candidates:
                print("pages without any single-filter B-tree")
                out["without_all_filter_btrees"] = await page_table(
                    stack, tenant_id, sample, pages, args.page_runs, "no filter B-trees"
                )
            for name in args.candidate:
                print(f"pages with candidate {name}: {CANDIDATES[name]}")
                async with with_candidate(owner, _statements(CANDIDATES[name], defs)):
                    out[f"candidate_{name}"] = await page_table(stack, tenant_id, sample, pages, args.page_runs, name)
        results["pages"] = out
    finally:
        await owner.close()


# -- ingest -----------------------------------------------------------------------------------------
BASE_KEY = 'ALTER TABLE bench_ix ADD PRIMARY KEY (tenant_id, id, "timestamp")'
"""The primary key of ``audit_logs`` (migration 0019): in every variant."""
BASE_INDEXES = ("ix_audit_logs_time", "ix_audit_logs_service_time")
"""The two partial time indexes (migration 0019; each event is in one of them): in every variant too."""


async def copy_cost(
    stack: Stack,
    tenant_id: uuid.UUID,
    create: list[str],
    args: argparse.Namespace,
    label: str,
    *,
    base: list[str],
) -> dict[str, float]:
    """COPY ``args.copy_rows`` new rows (1,000-row transactions, one connection) into a scratch copy of the
    tenant's events carrying only the primary key, the ``base`` indexes (what every event writes) and
    ``create``."""
    owner = stack.url(OWNER_ROLE, driver="postgresql")
    conn = await asyncpg.connect(owner)
    meter = CPUMeter(postgres=stack.embedded.pid if stack.embedded is not None else None)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_ix")
        await conn.execute("CREATE TABLE bench_ix (LIKE audit_logs INCLUDING DEFAULTS) PARTITION BY LIST (tenant_id)")
        await conn.execute(f"CREATE TABLE bench_ix_t PARTITION OF bench_ix FOR VALUES IN ('{tenant_id}')")
        await conn.execute("INSERT INTO bench_ix SELECT * FROM audit_logs WHERE tenant_id = $1", tenant_id)
        await conn.execute(BASE_KEY)
        for statement in [*base, *create]:
            words = statement.split()
            name = words[2]
            await conn.execute(
                statement.replace(f" {name} ", f" bench_ix_{name} ", 1).replace(" ON audit_logs ", " ON bench_ix ")
            )
        await conn.execute("VACUUM (ANALYZE) bench_ix")
        seq0 = int(await conn.fetchval("SELECT max(seq) FROM bench_ix")) + 1
        rng = random.Random(99)
        now = datetime.now(UTC)
        chunks = [csv_rows(rng, now, tenant_id, seq0 + i * 1000, 1000) for i in range(args.copy_rows // 1000)]
        admin = await asyncpg.connect(stack.admin_dsn)
        try:
            await admin.execute("CHECKPOINT")
        finally:
            await admin.close()
        lsn0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        before = meter.sample()
        start = time.perf_counter()
        for chunk in chunks:
            await conn.copy_to_table("bench_ix", source=io.BytesIO(chunk), columns=RAW_COLUMNS, format="csv")
        # A GIN index's pending list (fastupdate) defers work to whoever empties it (an insert that fills it,
        # (auto)vacuum): counted here, so a GIN is not measured cheaper than it is.
        await conn.execute(
            "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'bench_ix_t'::regclass AND a.amname = 'gin'"
        )
        elapsed = time.perf_counter() - start
        after = meter.sample()
        wal = int(await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", lsn0))
        size = int(await conn.fetchval("SELECT pg_indexes_size('bench_ix_t')"))
        await conn.execute("DROP TABLE bench_ix")
    finally:
        await conn.close()
    rows = len(chunks) * 1000
    out = {
        "rows_s": round(rows / elapsed),
        "pg_cpu_us_row": round((after.get("postgres", 0) - before.get("postgres", 0)) / rows * 1e6, 1),
        "wal_bytes_row": round(wal / rows),
        "index_mb": round(size / 2**20),
    }
    print(
        f"   [{label:34}] {out['rows_s']:7,} rows/s · PostgreSQL CPU {out['pg_cpu_us_row']:6.1f} µs/row · WAL"
        f" {out['wal_bytes_row']:5,} B/row · indexes {out['index_mb']} MB · load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return out


async def ingest_phase(stack: Stack, tenant_id: uuid.UUID, args: argparse.Namespace, results: dict[str, Any]) -> None:
    owner = await asyncpg.connect(stack.url(OWNER_ROLE, driver="postgresql"))
    try:
        await owner.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        defs = await index_defs(owner)
    finally:
        await owner.close()
    base_names = {name for name in defs if name.endswith("_pkey") or name in BASE_INDEXES}
    others = {name: d for name, d in defs.items() if name not in base_names}
    base = [d for name, d in defs.items() if name in BASE_INDEXES]
    variants: dict[str, list[str]] = {"base (primary key + time)": []}
    variants.update({f"+ {name}": [d] for name, d in others.items()})
    variants.update({f"+ {name}": [s for s in stmts if s not in defs] for name, stmts in CANDIDATES.items()})
    variants["all of the migrations"] = list(others.values())
    for name in args.candidate:
        keep = [d for n, d in others.items() if n not in FILTER_INDEXES]
        variants[f"set: {name}"] = [*keep, *_statements(CANDIDATES[name], defs)]
    if args.variants:
        variants = {n: v for n, v in variants.items() if n.startswith("base") or any(w in n for w in args.variants)}
    print(f"ingest: {args.copy_rows:,} rows COPYed onto {args.events:,}, {args.rounds} round(s)")
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, create in variants.items():
            rounds[name].append(await copy_cost(stack, tenant_id, create, args, name, base=base))
    summary = {}
    base_cost = _mean(rounds["base (primary key + time)"])
    for name, runs in rounds.items():
        mean = _mean(runs)
        summary[name] = {
            **mean,
            "extra_cpu_us_row": round(mean["pg_cpu_us_row"] - base_cost["pg_cpu_us_row"], 1),
            "extra_wal_bytes_row": round(mean["wal_bytes_row"] - base_cost["wal_bytes_row"]),
            "runs": runs,
        }
    results["ingest"] = summary
    print("ingest, mean of the rounds (extra = over the base):")
    for name, row in summary.items():
        print(
            f"   {name:36} {row['rows_s']:8,.0f} rows/s · CPU {row['pg_cpu_us_row']:6.1f} µs/row"
            f" (+{row['extra_cpu_us_row']:5.1f}) · WAL {row['wal_bytes_row']:6,.0f} B/row"
            f" (+{row['extra_wal_bytes_row']:,})"
        )


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.fmean(run[key] for run in runs), 1) for key in runs[0]}


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--phases", default="pages,ingest")
    parser.add_argument("--page-runs", type=int, default=15, help="timed executions per page")
    parser.add_argument("--copy-rows", type=int, default=100_000, help="rows COPYed per ingest variant")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the ingest variants")
    parser.add_argument(
        "--variants", action="append", default=[], help="ingest: only the variants whose name holds this (repeatable)"
    )
    parser.add_argument(
        "--only-candidates", action="store_true", help="pages: every index, then the candidates only (no drops)"
    )
    parser.add_argument(
        "--candidate", action="append", default=[], choices=sorted(CANDIDATES), help="index sets to try (repeatable)"
    )
    args = parser.parse_args()
    if not args.candidate:
        args.candidate = ["gin", "gin_rare"]
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a TERM still stops the servers (finally below)
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-indexes-"))
    stack = Stack(workdir, 1)
    results: dict[str, Any] = {"events": args.events, "machine": f"{os.cpu_count()} cores"}
    try:
        asyncio.run(stack.create_database())
        env = stack.api_env()
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        port = stack.serve("app.asgi:create_app_from_env", env)
        tid, _ = asyncio.run(writer_token(f"http://127.0.0.1:{port}"))
        stack.stop_servers()  # the API is not needed any more: its CPU is left to PostgreSQL
        tenant_id = uuid.UUID(tid)
        print(f"loading {args.events:,} events")
        asyncio.run(load_events(stack, tenant_id, args.events, datetime.now(UTC) - timedelta(minutes=1)))
        if "pages" in phases:
            asyncio.run(pages_phase(stack, tenant_id, args, results))
        if "ingest" in phases:
            asyncio.run(ingest_phase(stack, tenant_id, args, results))
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)  # the database of a 10M run is several GB
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"indexes-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
