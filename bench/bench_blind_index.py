"""What the keyed blind index of ``q`` costs (issue 13 §1): ingest, A/B in-process, and the ``q`` page.

Run on demand: ``uv run --frozen python bench/bench_blind_index.py`` (embedded PostgreSQL in a temporary
directory unless ``AUDIT_BENCH_ADMIN_URL`` names a server).

1. Ingest, in-process (no HTTP: the part the change touches): the events of ``bench.make_event`` as 1,000-event
   bulk bodies through the API's own ``prepare_bulk`` and ``IngestWriter`` (one client, each batch its own
   transaction), in alternating rounds of three variants over the same bodies:
   - ``blind``: the writer as it is (the search column is the tenant's blind index, built in Python);
   - ``clear``: the writer as it was before issue 13 (the search text in clear, ``to_tsvector('simple', ...)``
     in PostgreSQL), patched in for the bench;
   - the lean ceiling of issue 13: raw asyncpg ``COPY`` of the same rows on ONE connection, 1,000-row batches,
     into a table list-partitioned by tenant with only ``(tenant_id, id)`` and ``(tenant_id, timestamp desc,
     id desc)``.
   Also the CPU time per event of building the search value in Python (blind vector vs the old clear text).
2. The ``q`` page (limit 50, newest first), one query at a time (unpaced: the page's own cost, no queue): the
   same ``--events`` events written by each writer into two tenants, each read through ``GET /logs``'s own
   statement on the read pool (``bind_search``, the security-barrier view, ``build_list_sql``; the rows are not
   decoded): the blind tenant as it is, the clear one with the statement and view as they were before
   (``websearch_to_tsquery`` of ``q``), alternating; for a rare message word (~1 event in 3,100), a rare
   metadata word (1 in 5,000) and a word in most events (~52 % of messages, and metadata tags).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy import text

import app.logs.ingest as ingest
from app.logs.prepare import PreparedEvent, new_event_id, prepare_bulk
from app.logs.query import LogFilters, build_list_sql
from bench import RARE_WORDS, Stack, make_event
from db import migrate
from db.blind_index import SearchIndex, metadata_strings, search_index
from db.crypto import LocalMasterKey, TenantKeyring
from db.engine import make_engine
from db.fts import bind_search
from db.keyring import KeyringStore
from db.provision import API_ROLE, OWNER_ROLE
from db.tenancy import TenantDB, bind_session, create_read_pool
from db.urls import plain_dsn

RARE_META = "orchidvault"
RARE_META_EVERY = 5000
BATCH = 1000
_BLIND_RECORDS = ingest._records
_BLIND_STORE, _BLIND_STORE_PII = ingest._STORE, ingest._STORE_PII


def clear_text(message: str | None, metadata: Any) -> str:
    """The search text the writer stored before issue 13 (``app.logs.prepare._search_text`` as it was)."""
    parts = [message] if message else []
    if metadata:
        parts.extend(metadata_strings(metadata))
    return " ".join(parts).replace("\x00", " ")


def _clear_records(keyring: TenantKeyring, events: list[PreparedEvent]) -> list[tuple[Any, ...]]:
    records = []
    for ordinal, ev in enumerate(events, start=1):
        eid = ev.out.id
        payload = keyring.encrypt(ev.payload_plain, event_id=eid, field="payload") if ev.payload_plain else None
        pii = keyring.encrypt(ev.pii_plain, event_id=eid, field="pii") if ev.pii_plain else None
        records.append((*ev.copy_record(ordinal), payload, clear_text(ev.out.message, ev.out.metadata), pii))
    return records


def use_writer(kind: str) -> None:
    """Switch the ingest writer between this code (``blind``) and the pre-issue-13 search column (``clear``)."""
    if kind == "blind":
        ingest._records, ingest._STORE, ingest._STORE_PII = _BLIND_RECORDS, _BLIND_STORE, _BLIND_STORE_PII
    else:
        new, old = (
            "to_tsvector('simple', coalesce(s.message, '')) || s.search::tsvector",
            "to_tsvector('simple', coalesce(s.search, ''))",
        )
        assert new in _BLIND_STORE and new in _BLIND_STORE_PII
        ingest._records = _clear_records
        ingest._STORE = _BLIND_STORE.replace(new, old)
        ingest._STORE_PII = _BLIND_STORE_PII.replace(new, old)


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=10)
    events = []
    for i in range(count):
        event = make_event(rng, now)
        if i % RARE_META_EVERY == 0:
            event["metadata"]["case"] = f"ticket {RARE_META}"
        events.append(event)
    return events


class Bench:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.master = LocalMasterKey(os.urandom(32))
        self.keyrings = KeyringStore(self.master)
        self.engine = make_engine(stack.url(API_ROLE), pool_size=4, max_overflow=2, application_name="bench-blind")
        self.db = TenantDB(self.engine)
        self.writer = ingest.IngestWriter(plain_dsn(stack.url(API_ROLE)), self.db, self.keyrings)

    async def tenant(self, name: str) -> uuid.UUID:
        tenant_id = uuid.uuid4()
        async with self.db.system() as session:
            await session.execute(
                text("SELECT id FROM auditlog_create_tenant(:id, :name, false)"), {"id": tenant_id, "name": name}
            )
            await bind_session(session, tenant_id)
            await self.keyrings.create_first_key(session, tenant_id)
        return tenant_id

    async def ingest(self, tenant_id: uuid.UUID, bodies: list[bytes], kind: str) -> tuple[int, float]:
        """Prepare and store every body (one client, one batch at a time); returns (events, seconds)."""
        use_writer(kind)
        start = time.perf_counter()
        count = 0
        for body in bodies:
            events = prepare_bulk(
                body,
                tenant_id=tenant_id,
                actor="bench",
                now=datetime.now(UTC),
                max_items=10_000,
                max_item_bytes=65536,
                max_depth=32,
            )
            await self.writer.submit(tenant_id, events)
            count += len(events)
        return count, time.perf_counter() - start

    async def lean_copy(self, chunks: list[bytes], tenant_id: uuid.UUID) -> tuple[int, float]:
        conn = await asyncpg.connect(self.stack.url(OWNER_ROLE, driver="postgresql"))
        try:
            await conn.execute("DROP TABLE IF EXISTS bench_lean_blind")
            await conn.execute(
                "CREATE TABLE bench_lean_blind (LIKE audit_logs INCLUDING DEFAULTS) PARTITION BY LIST (tenant_id)"
            )
            await conn.execute(
                f"CREATE TABLE bench_lean_blind_t PARTITION OF bench_lean_blind FOR VALUES IN ('{tenant_id}')"
            )
            await conn.execute("ALTER TABLE bench_lean_blind ADD PRIMARY KEY (tenant_id, id)")
            await conn.execute('CREATE INDEX ON bench_lean_blind (tenant_id, "timestamp" DESC, id DESC)')
            start = time.perf_counter()
            for chunk in chunks:
                await conn.copy_to_table(
                    "bench_lean_blind", source=io.BytesIO(chunk), columns=RAW_COLUMNS, format="csv"
                )
            elapsed = time.perf_counter() - start
            await conn.execute("DROP TABLE bench_lean_blind")
        finally:
            await conn.close()
        return len(chunks) * BATCH, elapsed


RAW_COLUMNS = [
    "tenant_id", "timestamp", "id", "seq", "received_at", "action", "resource_type", "resource_id",
    "user_id", "session_id", "request_id", "severity", "ip_address", "user_agent", "message", "payload",
    "search",
]  # fmt: skip


def stored_vector(index: SearchIndex, event: dict[str, Any]) -> str:
    """The ``search`` value as stored: the message's words with positions (what ``to_tsvector('simple', ...)``
    makes of these plain words) and the metadata's tokens."""
    positions: dict[str, list[str]] = {}
    for pos, word in enumerate(re.findall(r"\w+", (event.get("message") or "").lower()), start=1):
        positions.setdefault(word, []).append(str(pos))
    parts = [f"'{w}':{','.join(at)}" for w, at in positions.items()]
    tokens = index.vector(event.get("metadata"))
    return " ".join([*parts, tokens] if tokens else parts)


def raw_chunks(events: list[dict[str, Any]], tenant_id: uuid.UUID, keyring: TenantKeyring) -> list[bytes]:
    """The rows as the blind writer stores them (a payload the size of the ciphertext, the blind vector)."""
    index = search_index(keyring)
    chunks = []
    for start in range(0, len(events), BATCH):
        buf = io.StringIO()
        out = csv.writer(buf)
        for seq, e in enumerate(events[start : start + BATCH], start=start + 1):
            payload = os.urandom(len(msgspec.json.encode(e["metadata"])) + 45)
            out.writerow([
                tenant_id, e["timestamp"], new_event_id(), seq, datetime.now(UTC).isoformat(), e["action"],
                e["resource_type"], e["resource_id"], e["user_id"], e["session_id"], e["request_id"],
                e["severity"], e["ip_address"], e["user_agent"], e["message"], "\\x" + payload.hex(),
                stored_vector(index, e),
            ])  # fmt: skip
        chunks.append(buf.getvalue().encode())
    return chunks


def cpu_per_event(events: list[dict[str, Any]], keyring: TenantKeyring) -> dict[str, float]:
    """µs per event of building the search value in Python: the metadata's tokens, and the old clear text."""
    index = search_index(keyring)
    sample = events[:20_000]
    out = {}
    for name, fn in (
        ("blind_tokens_us", lambda e: index.vector(e["metadata"])),
        ("clear_text_us", lambda e: clear_text(e["message"], e["metadata"])),
    ):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            for e in sample:
                fn(e)
            runs.append((time.perf_counter() - start) / len(sample) * 1e6)
        out[name] = round(min(runs), 2)
    return out


def bodies_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [msgspec.json.encode(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]


async def ingest_phase(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    events = make_events(args.ingest_events, seed=1)
    bodies = bodies_of(events)
    rates: dict[str, list[float]] = {"blind": [], "clear": [], "lean_copy": []}
    tenant = await bench.tenant(f"ingest-{uuid.uuid4().hex[:6]}")
    async with bench.db.tenant(tenant) as session:
        keyring = await bench.keyrings.get(session, tenant)
    results["cpu"] = cpu_per_event(events, keyring)
    chunks = raw_chunks(events, tenant, keyring)
    await bench.ingest(tenant, bodies[:3], "blind")  # warm-up
    for r in range(args.rounds):
        for kind in ("blind", "clear") if r % 2 == 0 else ("clear", "blind"):
            n, s = await bench.ingest(tenant, bodies, kind)
            rates[kind].append(n / s)
        n, s = await bench.lean_copy(chunks, tenant)
        rates["lean_copy"].append(n / s)
        print(f"   round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()), flush=True)
    use_writer("blind")
    med = {k: statistics.median(v) for k, v in rates.items()}
    results["ingest"] = {
        "events_per_round": len(events),
        "rounds": args.rounds,
        "events_per_s": {k: round(v) for k, v in med.items()},
        "ratio_to_lean_copy": {k: round(med[k] / med["lean_copy"], 3) for k in ("blind", "clear")},
        "blind_vs_clear": round(med["blind"] / med["clear"], 3),
    }


async def fill(bench: Bench, tenant_id: uuid.UUID, events: list[dict[str, Any]], kind: str) -> None:
    bodies = bodies_of(events)
    await bench.ingest(tenant_id, bodies, kind)
    use_writer("blind")


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
    }


CLEAR_VIEW = """
CREATE OR REPLACE VIEW bench_fts_clear WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant()
    AND search @@ websearch_to_tsquery('simple', current_setting('auditlog.search', true));
GRANT SELECT ON bench_fts_clear TO auditlog_api;
"""
"""The search view as migration 0010 made it (before issue 13), for the ``clear`` tenant's page."""


def clear_sql(tenant_id: uuid.UUID, q: str) -> tuple[str, list[Any]]:
    """``GET /logs``'s statement as it was before issue 13: the old view, ``websearch_to_tsquery`` of ``q``."""
    sql, args = build_list_sql(tenant_id, LogFilters(), after=None, limit=50)
    sql = sql.replace(" FROM audit_logs WHERE ", " FROM bench_fts_clear WHERE ")
    head, order = sql.split(' ORDER BY "timestamp" DESC', 1)
    args.insert(len(args) - 1, q)  # before the LIMIT's value
    limit = f"${len(args)}"
    order = order.replace(f"${len(args) - 1}", limit)
    return (
        f"{head} AND search @@ websearch_to_tsquery('simple', ${len(args) - 1}) ORDER BY \"timestamp\" DESC{order}",
        args,
    )


async def page_phase(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    events = make_events(args.events, seed=2)
    blind, clear = await bench.tenant("page-blind"), await bench.tenant("page-clear")
    print(f"   writing {len(events):,} events into each of two tenants", flush=True)
    await fill(bench, blind, events, "blind")
    await fill(bench, clear, events, "clear")
    owner = await asyncpg.connect(bench.stack.url(OWNER_ROLE, driver="postgresql"))
    await owner.execute(CLEAR_VIEW)
    await owner.execute("VACUUM (ANALYZE) audit_logs")
    admin = await asyncpg.connect(bench.stack.admin_dsn)
    try:
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()
    indexes = {}
    for tenant in (blind, clear):
        async with bench.db.tenant(tenant) as session:
            indexes[tenant] = search_index(await bench.keyrings.get(session, tenant))
    words = {"rare message word": RARE_WORDS[0], "rare metadata word": RARE_META, "word in most events": "alpha"}
    pool = await create_read_pool(plain_dsn(bench.stack.url(API_ROLE)), max_size=2)
    read_db = TenantDB(bench.engine, pool)
    out: dict[str, Any] = {"events_per_tenant": len(events)}
    try:
        for label, word in words.items():
            filters = LogFilters(q=word)
            timings: dict[str, list[float]] = {"blind": [], "clear": []}
            rows: dict[str, int] = {}
            for i in range(args.queries + 3):
                for kind, tenant in (
                    (("blind", blind), ("clear", clear)) if i % 2 else (("clear", clear), ("blind", blind))
                ):
                    index = indexes[tenant]
                    if kind == "blind":
                        sql, sql_args = build_list_sql(tenant, filters, after=None, limit=50, search=index)
                    else:
                        sql, sql_args = clear_sql(tenant, word)
                    start = time.perf_counter()
                    async with read_db.read(tenant) as pg:  # as GET /logs runs it (minus decoding the rows)
                        if kind == "blind":
                            await bind_search(pg, index, word, local=False)
                        else:
                            await pg.execute("SELECT set_config('auditlog.search', $1, false)", word)
                        found = await pg.fetch(sql, *sql_args)
                    if i >= 3:  # warm-up
                        timings[kind].append(time.perf_counter() - start)
                    rows[kind] = len(found)
            out[label] = {"q": word, "rows": rows, **{kind: _ms(t) for kind, t in timings.items()}}
            if args.explain:
                for kind, tenant in (("blind", blind), ("clear", clear)):
                    if kind == "blind":
                        sql, sql_args = build_list_sql(tenant, filters, after=None, limit=50, search=indexes[tenant])
                    else:
                        sql, sql_args = clear_sql(tenant, word)
                    async with read_db.read(tenant) as pg:
                        if kind == "blind":
                            await bind_search(pg, indexes[tenant], word, local=False)
                        else:
                            await pg.execute("SELECT set_config('auditlog.search', $1, false)", word)
                        plan = await pg.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *sql_args)
                    print(f"   plan, {label}, {kind}:\n      " + "\n      ".join(r[0] for r in plan), flush=True)
            print(f"   {label}: {out[label]}", flush=True)
        size = "SELECT sum(pg_relation_size(oid)) FROM pg_class WHERE relkind = 'i' AND relname LIKE $1"
        out["search_gin_bytes"] = {
            name: int(await owner.fetchval(size, f"audit_logs_t_{t.hex}%search%") or 0)
            for name, t in (("blind", blind), ("clear", clear))
        }
    finally:
        await pool.close()
        await owner.close()
    results["q_page"] = out


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(stack)
    await bench.writer.start()
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        if "ingest" in args.phases:
            await ingest_phase(bench, args, results)
        if "page" in args.phases:
            await page_phase(bench, args, results)
    finally:
        await bench.writer.stop()
        await bench.engine.dispose()
    results["load_after"] = os.getloadavg()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest-events", type=int, default=20_000, help="events per ingest round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds (medians are reported)")
    parser.add_argument("--events", type=int, default=200_000, help="events per tenant for the q page")
    parser.add_argument("--queries", type=int, default=40, help="timed queries per word and variant")
    parser.add_argument("--phases", default="ingest,page", help="comma-separated subset of ingest,page")
    parser.add_argument("--explain", action="store_true", help="print each page statement's plan (EXPLAIN ANALYZE)")
    args = parser.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="auditlog-bench-blind-"))
    stack = Stack(workdir, 1)
    try:
        asyncio.run(stack.create_database())
        migrate.upgrade(stack.url(OWNER_ROLE))
        results = asyncio.run(run(stack, args))
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)  # the cluster and its WAL: gigabytes at 200k events
    print(msgspec.json.format(msgspec.json.encode(results)).decode())


if __name__ == "__main__":
    main()
