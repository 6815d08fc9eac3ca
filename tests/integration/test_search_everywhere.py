"""``q`` selects the same events on every reader, through the blind index (issue 13): ``GET /logs``, the live
stream's statements (replay and the shared live fetch), exports and stats over the hot tail and over the lake,
and alert rules, each against a Python oracle of the index's rules (``db.blind_index``)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from analytics.lake import LakeStore, export_tenant
from app.stream.sql import build_fetch_sql
from db.blind_index import Term, metadata_strings, parse_q, search_index, words
from db.event_filters import LogFilters
from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.test_alerts import _wait_for, app_with_worker, receiver
from tests.integration.test_search import walk

MESSAGES = ["red fox jumps", "lazy dog sleeps", "quick red dog", "fox and dog", None, "nothing here"]
METADATA: list[dict[str, Any] | None] = [
    {"color": "amber", "tags": ["fox", "owl"]},
    {"note": "amber light", "n": 42},
    None,
    {"deep": {"list": [{"x": "Owl Amber"}]}, "ok": True},
    {"who": "dog"},
    {"fox": "values only"},
]
QUERIES = [
    "amber",
    "owl",
    "fox",
    "dog -fox",
    '"red dog"',
    '"quick red"',
    '"amber light"',
    "42",
    "amber or sleeps",
    "fox amber",
    "true",
    "only",
    "color",
    "-dog",
]


def _events() -> list[dict[str, Any]]:
    now = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for i in range(36):
        event: dict[str, Any] = {
            "action": "UPDATE",
            "resource_type": "doc",
            "resource_id": f"d{i}",
            "timestamp": (now - timedelta(minutes=i)).isoformat(),
        }
        if MESSAGES[i % 6] is not None:
            event["message"] = MESSAGES[i % 6]
        if METADATA[(i // 6) % 6] is not None:
            event["metadata"] = METADATA[(i // 6) % 6]
        out.append(event)
    return out


def _oracle(event: dict[str, Any], q: str) -> bool:
    message = words(event.get("message") or "")
    values = {w for v in metadata_strings(event.get("metadata")) for w in words(v)}

    def term(t: Term) -> bool:
        n = len(t.words)
        hit = any(tuple(message[i : i + n]) == t.words for i in range(len(message) - n + 1))
        hit = hit or all(w in values for w in t.words)
        return not hit if t.negated else hit

    return any(all(term(t) for t in group) for group in parse_q(q))


async def _export_ids(client: ApiClient, headers: dict[str, str], q: str) -> list[str]:
    response = await client.get("/api/v1/logs/export", params={"q": q, "format": "ndjson"}, headers=headers)
    assert response.status_code == 200, response.text
    return [json.loads(line)["id"] for line in response.content.decode().splitlines() if line]


async def _stats_total(client: ApiClient, headers: dict[str, str], q: str) -> int:
    now = datetime.now(UTC)
    params = {"q": q, "start_time": (now - timedelta(days=1)).isoformat(), "end_time": now.isoformat()}
    response = await client.get("/api/v1/logs/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def test_q_selects_the_same_events_on_every_reader(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    tid = uuid.UUID(t.id)
    events = _events()
    response = await client.post("/api/v1/logs/bulk", json=events, headers=t.user)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    runtime = client.app.state.runtime
    wanted = {q: sorted(i for i, e in zip(ids, events, strict=True) if _oracle(e, q)) for q in QUERIES}
    assert all(wanted[q] for q in QUERIES if q not in ("true", "color"))
    assert not wanted["true"] and not wanted["color"]  # not booleans, not keys

    for q in QUERIES:
        listed = sorted(i["id"] for i in await walk(client, t.auditor, {"q": q}))
        assert listed == wanted[q], q
        # the live stream's statements: a replay, and the shared live fetch's flag per filter set
        filters = LogFilters(q=q)
        async with runtime.db.read(tid) as pg:
            index = search_index(await runtime.keyrings.get(pg, tid))
            sql, args = build_fetch_sql(tid, 0, [filters], replay=True, search=index, limit=1000)
            replayed = sorted(str(r["id"]) for r in await pg.fetch(sql, *args))
            sql, args = build_fetch_sql(tid, 0, [LogFilters(), filters], search=index, limit=1000)
            flagged = sorted(str(r["id"]) for r in await pg.fetch(sql, *args) if r[-1])
        assert replayed == wanted[q] and flagged == wanted[q], q
        # exports and stats read the hot tail (no lake yet)
        assert sorted(await _export_ids(client, t.auditor, q)) == wanted[q], q
        assert await _stats_total(client, t.auditor, q) == len(wanted[q]), q

    nul = await client.get("/api/v1/logs", params={"q": "amber\x00light"}, headers=t.auditor)
    assert nul.status_code == 200, nul.text  # a NUL never reaches PostgreSQL (its text cannot hold one)

    # the events move to the lake (decrypted there, matched by analytics.filters): the same answers
    conn = await asyncpg.connect(database.dsn(database.api_url))
    try:
        exported = await export_tenant(conn, LakeStore.from_url(runtime.settings.lake_location), runtime.keyrings, tid)
        assert exported.rows >= len(events)
    finally:
        await conn.close()
    for q in QUERIES:
        assert sorted(await _export_ids(client, t.auditor, q)) == wanted[q], q
        assert await _stats_total(client, t.auditor, q) == len(wanted[q]), q


async def test_an_alert_rule_matches_q_on_metadata_words(database: Database, tmp_path: Path) -> None:
    async with receiver() as hook, app_with_worker(database, tmp_path, allow_private_urls=True) as client:
        tenant = await make_tenant(client)
        created = await client.post(
            "/api/v1/alerts",
            json={"name": "vault", "match": {"q": "orchidvault"}, "threshold": 2, "webhook_url": hook.url},
            headers=tenant.admin,
        )
        assert created.status_code == 201, created.text
        posted = []
        for meta in ({"case": "orchidvault opened"}, {"case": "other"}, {"list": ["OrchidVault"]}):
            body = {"action": "OPEN", "resource_type": "vault", "metadata": meta}
            response = await client.post("/api/v1/logs", json=body, headers=tenant.user)
            assert response.status_code == 201
            posted.append(response.json()["id"])
        await _wait_for(lambda: len(hook.requests) >= 1)
        payload = json.loads(hook.requests[0][2])
        assert payload["count"] == 2
        assert sorted(e["id"] for e in payload["events"]) == sorted([posted[0], posted[2]])
