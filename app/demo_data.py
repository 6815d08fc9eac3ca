"""Demo events for the sample tenants (development only, ``AUDIT_DEMO_DATA``), so that a newcomer's first
``./run`` has something to search, chart, export and ask about.

``bootstrap`` creates the sample tenants and leaves a marker file (``demo-events.todo``) naming them; the
API process then seeds them in the background (``start_demo_seeding``), so the first start is not slowed
down: tens of thousands of events per tenant over the last 30 days - logins and failed logins, CRUD on a
few resource types with before/after states, and a few incidents at WARNING/ERROR/CRITICAL - written
through the ingest writer in bulk batches (the write path of ``POST /logs/bulk``: masking, encryption,
``seq``), then one lake export. A tenant that already holds demo events is skipped, and an advisory lock
keeps several API processes from seeding twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text

from app.logs.prepare import prepare_event
from app.logs.schemas import EventIn
from db.urls import plain_dsn

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ["DEMO_EVENTS_PER_TENANT", "demo_events", "mark_for_seeding", "seed_tenant", "start_demo_seeding"]

log = logging.getLogger(__name__)

DEMO_EVENTS_PER_TENANT = 20_000
MARKER = "demo-events.todo"
_INCIDENTS = ("escalation", "payment", "payment", *["login"] * 7)
_LOCK = 0x64656D6F  # "demo"
_BATCH = 2_000
_ALREADY_SEEDED = 1_000
"""A sample tenant with more events than this (its users' creation and logins are a handful) has its demo data."""
_LAST_SEQ = text("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = :t")

_FIRST = (
    "an",
    "binh",
    "chi",
    "duc",
    "giang",
    "hoa",
    "khanh",
    "linh",
    "minh",
    "ngoc",
    "phuong",
    "quang",
    "thao",
    "trung",
    "tuan",
    "vy",
    "yuki",
    "sora",
    "kenji",
    "aiko",
    "emma",
    "liam",
    "noah",
    "olivia",
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
)
_RESOURCES = {
    "invoice": ("amount", "status", ("draft", "sent", "paid", "overdue")),
    "customer": ("tier", "status", ("trial", "active", "churned")),
    "document": ("pages", "visibility", ("private", "team", "public")),
    "project": ("members", "stage", ("planning", "building", "review", "done")),
}


def _when(rng: random.Random, start: datetime, now: datetime) -> datetime:
    """A time in [start, now), busier on working hours and weekdays."""
    while True:
        moment = start + timedelta(seconds=rng.random() * (now - start).total_seconds())
        hour_weight = 1.0 if 8 <= moment.hour <= 18 else 0.25
        day_weight = 1.0 if moment.weekday() < 5 else 0.35
        if rng.random() < hour_weight * day_weight:
            return moment


def demo_events(name: str, count: int, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """``count`` realistic events of tenant ``name`` over the 30 days before ``now``, oldest first."""
    rng = random.Random(f"auditlog-demo-{name}")  # noqa: S311 - sample data, not secrets
    now = now or datetime.now(UTC)
    start = now - timedelta(days=30)
    domain = f"{name.lower()}.example"
    users = [
        f"{_FIRST[i % len(_FIRST)]}.{i:02d}@{domain}" if i % 4 == 0 else f"{_FIRST[i % len(_FIRST)]}.{i:02d}"
        for i in range(40)
    ]
    ips = [f"203.0.113.{rng.randint(1, 254)}" for _ in range(30)] + [
        f"2001:db8::{rng.randint(1, 65535):x}" for _ in range(5)
    ]
    events: list[dict[str, Any]] = []
    incidents = count // 200
    for _ in range(count - incidents):
        user = rng.choice(users)
        base: dict[str, Any] = {
            "user_id": user,
            "timestamp": _when(rng, start, now).isoformat(),
            "ip_address": rng.choice(ips),
            "user_agent": rng.choice(_AGENTS),
            "session_id": f"sess-{rng.randrange(16**8):08x}",
            "request_id": f"req-{rng.randrange(16**12):012x}",
        }
        roll = rng.random()
        if roll < 0.22:
            events.append(
                {
                    **base,
                    "action": "LOGIN",
                    "resource_type": "session",
                    "message": f"{user} signed in",
                    "metadata": {"method": rng.choice(["password", "sso", "passkey"]), "mfa": rng.random() < 0.7},
                }
            )
        elif roll < 0.26:
            events.append(
                {
                    **base,
                    "action": "LOGIN_FAILED",
                    "resource_type": "session",
                    "severity": "WARNING",
                    "message": f"failed sign-in for {user}",
                    "metadata": {"reason": rng.choice(["bad_password", "unknown_user", "mfa_timeout"])},
                }
            )
        elif roll < 0.30:
            events.append({**base, "action": "LOGOUT", "resource_type": "session", "message": f"{user} signed out"})
        else:
            kind = rng.choice(list(_RESOURCES))
            number_field, state_field, states = _RESOURCES[kind]
            rid = f"{kind[:3]}-{rng.randint(1000, 1400)}"
            action = rng.choices(["READ", "VIEW", "CREATE", "UPDATE", "DELETE", "EXPORT"], [30, 20, 12, 25, 4, 3])[0]
            event = {
                **base,
                "action": action,
                "resource_type": kind,
                "resource_id": rid,
                "message": f"{user} {action.lower()} {kind} {rid}",
            }
            if action == "UPDATE":
                old, new = rng.sample(states, 2)
                event["before_state"] = {state_field: old, number_field: rng.randint(1, 500)}
                event["after_state"] = {state_field: new, number_field: rng.randint(1, 500)}
            elif action == "CREATE":
                event["after_state"] = {state_field: states[0], number_field: rng.randint(1, 500)}
            elif action == "DELETE":
                event["before_state"] = {state_field: rng.choice(states)}
                event["severity"] = "WARNING" if rng.random() < 0.3 else "INFO"
            if rng.random() < 0.3:
                event["metadata"] = {
                    "client": rng.choice(["web", "ios", "android", "api"]),
                    "team": rng.choice(["ops", "sales", "finance", "eng"]),
                }
            events.append(event)
    # incidents: a brute-force burst, failed payments, a privilege escalation
    burst_at = now - timedelta(days=rng.randint(3, 25), hours=rng.randint(0, 12))
    attacker = f"198.51.100.{rng.randint(1, 254)}"
    for i in range(incidents):
        incident = _INCIDENTS[i % len(_INCIDENTS)]
        moment = burst_at + timedelta(seconds=7 * i)
        if incident == "login":
            events.append(
                {
                    "action": "LOGIN_FAILED",
                    "resource_type": "session",
                    "user_id": rng.choice(users),
                    "severity": "WARNING" if i % 20 else "ERROR",
                    "timestamp": moment.isoformat(),
                    "ip_address": attacker,
                    "user_agent": "python-requests/2.32.3",
                    "message": "failed sign-in (many attempts from one address)",
                    "metadata": {"reason": "bad_password", "attempt": i},
                }
            )
        elif incident == "payment":
            events.append(
                {
                    "action": "PAYMENT_FAILED",
                    "resource_type": "invoice",
                    "resource_id": f"inv-{rng.randint(1000, 1400)}",
                    "severity": "ERROR",
                    "timestamp": _when(rng, start, now).isoformat(),
                    "message": "card declined by the payment provider",
                    "metadata": {"provider": "stripe", "code": rng.choice(["card_declined", "expired_card"])},
                }
            )
        else:
            events.append(
                {
                    "action": "ROLE_ESCALATED",
                    "resource_type": "user",
                    "resource_id": rng.choice(users),
                    "user_id": rng.choice(users),
                    "severity": "CRITICAL",
                    "timestamp": _when(rng, start, now).isoformat(),
                    "ip_address": attacker,
                    "message": "role raised to Admin outside the approval flow",
                    "before_state": {"role": "User"},
                    "after_state": {"role": "Admin"},
                }
            )
    events.sort(key=lambda e: e["timestamp"])
    yield from events


def mark_for_seeding(data_dir: Path, tenants: list[tuple[uuid.UUID, str]]) -> None:
    """Called by bootstrap for freshly created sample tenants: the API process seeds them."""
    path = data_dir / MARKER
    existing = json.loads(path.read_text()) if path.exists() else []
    existing.extend({"id": str(tid), "name": name} for tid, name in tenants)
    path.write_text(json.dumps(existing))


async def seed_tenant(runtime: Runtime, tenant_id: uuid.UUID, name: str, count: int = DEMO_EVENTS_PER_TENANT) -> int:
    """Write ``count`` demo events of ``name`` through the ingest writer; returns how many."""
    writer = runtime.services["ingest"]
    now = datetime.now(UTC)
    written = 0
    batch: list[Any] = []
    for raw in demo_events(name, count, now):
        event = EventIn(**{**raw, "timestamp": datetime.fromisoformat(raw["timestamp"])})
        batch.append(prepare_event(event, tenant_id=tenant_id, actor="demo", now=now))
        if len(batch) >= _BATCH:
            await writer.submit(tenant_id, batch)
            written += len(batch)
            batch = []
            await asyncio.sleep(0)  # leave the loop to requests between batches
    if batch:
        await writer.submit(tenant_id, batch)
        written += len(batch)
    return written


async def _seed_pending(runtime: Runtime, count: int = DEMO_EVENTS_PER_TENANT) -> None:
    path = runtime.settings.data_dir / MARKER
    conn = await asyncpg.connect(plain_dsn(runtime.settings.database_url or ""))
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
            return  # another API process is seeding
        if not path.exists():
            return
        started = time.monotonic()
        pending = json.loads(path.read_text())
        total = 0
        for item in pending:
            tenant_id = uuid.UUID(item["id"])
            async with runtime.db.tenant(tenant_id) as session:
                last_seq = (await session.execute(_LAST_SEQ, {"t": tenant_id})).scalar_one_or_none() or 0
            if last_seq > _ALREADY_SEEDED:
                continue
            total += await seed_tenant(runtime, tenant_id, item["name"], count)
        from app.retention.commands import export_lake_now

        await export_lake_now(runtime)
        path.unlink(missing_ok=True)
        log.info("demo data: %d events seeded in %.1f s and exported to the lake", total, time.monotonic() - started)
    finally:
        await conn.close()


def start_demo_seeding(runtime: Runtime) -> asyncio.Task[None] | None:
    """Seed pending sample tenants in the background (development only); ``None`` when nothing is pending."""
    if not runtime.settings.seed_demo_data or not (runtime.settings.data_dir / MARKER).exists():
        return None

    async def run() -> None:
        try:
            await _seed_pending(runtime)
        except Exception:
            log.exception("demo data seeding failed; it is retried at the next start")

    return asyncio.create_task(run(), name="demo-data")


class DemoSeeding:
    """The background seeding task as a lifecycle service (``stop`` cancels it)."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
