"""GET /api/v1/logs and /logs/{id} against a brute-force Python oracle over the same generated events.

Events are written straight into PostgreSQL with the storage conventions (seq range, encrypted payload, the
tenant's blind index in ``search``) so these tests do not depend on POST /logs; tokens are minted directly.
The helpers here (``seed``, ``insert_events``, ``reader``, ``walk``...) are shared by the other read-path
test modules.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
import uuid_utils
from litestar.testing import AsyncTestClient

from app.auth.principal import Role
from app.runtime import Runtime
from app.tenants.service import create_tenant
from db.blind_index import search_index
from tests.conftest import Database

VOCAB = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
ACTIONS = ["CREATE", "READ", "UPDATE", "DELETE", "LOGIN"]
SEVERITIES = ["INFO"] * 14 + ["WARNING"] * 3 + ["ERROR"] * 2 + ["CRITICAL"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.7", "2001:db8::1", "2001:db8::2"]


# --------------------------------------------------------------------------------------------- helpers
@dataclass
class Tenant:
    id: uuid.UUID
    headers: dict[str, str]
    reader_id: uuid.UUID


@dataclass
class Ev:
    tenant_id: uuid.UUID
    timestamp: datetime
    id: uuid.UUID = field(default_factory=lambda: uuid.UUID(bytes=uuid_utils.uuid7().bytes))
    action: str = "CREATE"
    resource_type: str = "doc"
    resource_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    request_id: str | None = None
    severity: str = "INFO"
    ip_address: str | None = None
    user_agent: str | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = None
    before_state: dict[str, Any] | None = None
    after_state: dict[str, Any] | None = None

    def key(self) -> tuple[datetime, uuid.UUID]:
        return (self.timestamp, self.id)

    def words(self) -> set[str]:
        text = " ".join([self.message or "", *_strings(self.metadata)])
        return {w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def runtime_of(client: AsyncTestClient[Any]) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


async def new_tenant(client: AsyncTestClient[Any], role: Role = Role.AUDITOR) -> Tenant:
    runtime = runtime_of(client)
    made = await create_tenant(runtime, f"t-{uuid.uuid4().hex[:8]}")
    return reader(client, made.id, role)


def reader(client: AsyncTestClient[Any], tenant_id: uuid.UUID, role: Role = Role.AUDITOR) -> Tenant:
    user = uuid.uuid4()
    token = runtime_of(client).tokens.issue(user_id=user, tenant_id=tenant_id, role=role, session_id=uuid.uuid4())
    return Tenant(tenant_id, {"Authorization": f"Bearer {token}"}, user)


async def insert_events(runtime: Runtime, events: list[Ev]) -> None:
    """Store events directly, per tenant, with the conventions of the write path."""
    by_tenant: dict[uuid.UUID, list[Ev]] = {}
    for ev in events:
        by_tenant.setdefault(ev.tenant_id, []).append(ev)
    for tid, evs in by_tenant.items():
        async with runtime.db.tenant(tid) as session:
            keyring = await runtime.keyrings.get(session, tid)
            index = search_index(keyring)
            raw = await (await session.connection()).get_raw_connection()
            pg: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
            last = await pg.fetchval(
                "UPDATE tenant_log_seq SET last_seq = last_seq + $2 WHERE tenant_id = $1 RETURNING last_seq",
                tid,
                len(evs),
            )
            first = last - len(evs) + 1
            rows = []
            for i, ev in enumerate(evs):
                payload = None
                if ev.metadata is not None or ev.before_state is not None or ev.after_state is not None:
                    plain = msgspec.json.encode(
                        {"metadata": ev.metadata, "before_state": ev.before_state, "after_state": ev.after_state}
                    )
                    payload = keyring.encrypt(plain, event_id=ev.id, field="payload")
                search = index.vector(ev.metadata)
                rows.append(
                    (tid, ev.timestamp, ev.id, first + i, ev.action, ev.resource_type, ev.resource_id, ev.user_id,
                     ev.session_id, ev.request_id, ev.severity, ev.ip_address, ev.user_agent, ev.message,
                     payload, search)
                )  # fmt: skip
            await pg.executemany(
                """INSERT INTO audit_logs (tenant_id, "timestamp", id, seq, action, resource_type, resource_id,
                     user_id, session_id, request_id, severity, ip_address, user_agent, message, payload, search)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::inet, $13, $14, $15,
                     to_tsvector('simple', coalesce($14, '')) || $16::tsvector)""",
                rows,
            )


def generate(tenant_ids: list[uuid.UUID], n: int, *, seed: int = 7, end: datetime | None = None) -> list[Ev]:
    rng = random.Random(seed)
    end = end or datetime.now(UTC) - timedelta(hours=1)
    events: list[Ev] = []
    for _ in range(n):
        if events and rng.random() < 0.1:
            ts = rng.choice(events).timestamp  # identical timestamps: the id breaks the tie
        else:
            ts = end - timedelta(seconds=rng.randint(0, 40 * 86400), microseconds=rng.randint(0, 999_999))
        meta: dict[str, Any] | None = None
        r = rng.random()
        if r < 0.4:
            meta = {"tag": rng.choice(VOCAB), "n": rng.randint(1, 9)}
        elif r < 0.6:
            meta = {"nested": {"deep": rng.choice(VOCAB)}, "list": [rng.choice(VOCAB)]}
        events.append(
            Ev(
                tenant_id=rng.choice(tenant_ids),
                timestamp=ts,
                action=rng.choice(ACTIONS),
                resource_type=rng.choice(["doc", "invoice", "user"]),
                resource_id=rng.choice([None, *[f"r{i}" for i in range(15)]]),
                user_id=rng.choice([None, *[f"u{i}" for i in range(8)]]),
                session_id=rng.choice([None, *[f"s{i}" for i in range(10)]]),
                request_id=rng.choice([None, *[f"req-{i}" for i in range(30)]]),
                severity=rng.choice(SEVERITIES),
                ip_address=rng.choice([None, *IPS]),
                user_agent=rng.choice([None, "curl/8", "Mozilla/5.0"]),
                message=" ".join(rng.choice(VOCAB) for _ in range(3)) if rng.random() < 0.9 else None,
                metadata=meta,
                before_state={"v": rng.randint(1, 5)} if rng.random() < 0.3 else None,
                after_state={"v": rng.randint(6, 9), "who": rng.choice(VOCAB)} if rng.random() < 0.3 else None,
            )
        )
    return events


async def walk(
    client: AsyncTestClient[Any], headers: dict[str, str], params: dict[str, Any], limit: int = 100
) -> list[dict[str, Any]]:
    """Every item of a query, following ``next_cursor`` to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/logs", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body["items"]) == limit
    raise AssertionError("too many pages")


def rfc3339(ts: datetime) -> str:
    return ts.isoformat()


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def is_service(resource_type: str) -> bool:
    return resource_type == "audit_log" or resource_type.lower().startswith("auditlog.")


def matches(ev: Ev, p: dict[str, Any]) -> bool:
    """The oracle: what ``GET /logs`` must return for query parameters ``p``."""
    if "start_time" in p and ev.timestamp < datetime.fromisoformat(p["start_time"]):
        return False
    if "end_time" in p and ev.timestamp > datetime.fromisoformat(p["end_time"]):
        return False
    for name in ("user_id", "action", "resource_type", "resource_id", "session_id", "request_id", "ip_address"):
        if name in p and getattr(ev, name) not in _listed(p[name]):
            return False
    for name in ("user_id", "action", "resource_type"):
        value = getattr(ev, name)
        if f"exclude_{name}" in p and value is not None and value in _listed(p[f"exclude_{name}"]):
            return False
    asked = p.get("include_system") in ("true", "1", True) or any(
        is_service(rt) for rt in _listed(p.get("resource_type", []))
    )
    if is_service(ev.resource_type) and not asked:
        return False
    if "severity" in p:
        wanted = p["severity"] if isinstance(p["severity"], list) else [p["severity"]]
        if ev.severity not in wanted:
            return False
    if "q" in p:
        words = ev.words()
        q = p["q"]
        if " or " in q:
            return any(w in words for w in q.split(" or "))
        for term in q.split():
            if term.startswith("-"):
                if term[1:] in words:
                    return False
            elif term not in words:
                return False
    return True


def expected(events: list[Ev], tenant_id: uuid.UUID, p: dict[str, Any]) -> list[uuid.UUID]:
    chosen = [e for e in events if e.tenant_id == tenant_id and matches(e, p)]
    chosen.sort(key=Ev.key, reverse=True)
    return [e.id for e in chosen]


class StubRecorder:
    """Stands in for the read-audit recorder where VIEW events would disturb the oracle."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def record_read(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))

    async def stop(self) -> None:
        return None


async def quiet(client: AsyncTestClient[Any]) -> StubRecorder:
    """Replace the running read-audit recorder with a stub (read auditing has its own tests)."""
    runtime = runtime_of(client)
    recorder = runtime.services.get("read_audit")
    if recorder is not None:
        await recorder.stop()
    stub = StubRecorder()
    runtime.services["read_audit"] = stub
    return stub


@dataclass
class World:
    a: Tenant
    b: Tenant
    events: list[Ev]
    stub: StubRecorder


async def make_world(client: AsyncTestClient[Any]) -> World:
    """Two tenants with 2,000 generated events between them; read auditing stubbed out."""
    stub = await quiet(client)
    a = await new_tenant(client)
    b = await new_tenant(client)
    events = generate([a.id, b.id], 2000)
    await insert_events(runtime_of(client), events)
    return World(a, b, events, stub)


@pytest.fixture
async def world(client: AsyncTestClient[Any]) -> World:
    return await make_world(client)


def ids(items: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(i["id"]) for i in items]


# ----------------------------------------------------------------------------------------------- tests
async def test_every_filter_and_combinations_match_the_oracle(client: AsyncTestClient[Any], world: World) -> None:
    evs = [e for e in world.events if e.tenant_id == world.a.id]
    mid = sorted(e.timestamp for e in evs)[len(evs) // 2]
    late = sorted(e.timestamp for e in evs)[(len(evs) * 3) // 4]
    queries: list[dict[str, Any]] = [
        {},
        {"start_time": rfc3339(mid)},  # an exact event timestamp: inclusive bound
        {"end_time": rfc3339(mid)},
        {"start_time": rfc3339(mid), "end_time": rfc3339(late)},
        {"start_time": rfc3339(mid), "end_time": rfc3339(mid)},
        {"user_id": "u3"},
        {"action": "DELETE"},
        {"resource_type": "invoice"},
        {"resource_id": "r7"},
        {"severity": "CRITICAL"},
        {"severity": ["ERROR", "CRITICAL"]},
        {"session_id": "s4"},
        {"request_id": "req-11"},
        {"ip_address": "10.0.0.2"},
        {"ip_address": "2001:db8::1"},
        {"q": "alpha"},
        {"q": "alpha bravo"},
        {"q": "charlie or delta"},
        {"q": "echo -foxtrot"},
        {"q": "golf", "severity": ["WARNING", "ERROR"]},
        {"user_id": "u1", "action": "UPDATE"},
        {"resource_type": "doc", "resource_id": "r3"},
        {"severity": ["INFO", "WARNING"], "start_time": rfc3339(mid)},
        {"ip_address": "10.0.0.1", "end_time": rfc3339(late), "action": "CREATE"},
        {"session_id": "s1", "user_id": "u2"},
        {"request_id": "req-3", "severity": "INFO", "q": "hotel"},
        {"user_id": "nobody"},
    ]
    nonempty = 0
    for params in queries:
        want = expected(world.events, world.a.id, params)
        got = ids(await walk(client, world.a.headers, params, limit=53))
        assert got == want, params
        nonempty += bool(want)
    assert nonempty >= len(queries) - 2  # the data really exercises the filters
    # tenant B sees exactly its own events, and a full walk with the default page size agrees too
    got_b = ids(await walk(client, world.b.headers, {}, limit=50))
    assert got_b == expected(world.events, world.b.id, {})
    assert not set(got_b) & {e.id for e in evs}
    # pages of size 1 and 1000 give the same order
    params = {"severity": ["ERROR", "CRITICAL"], "q": "alpha or juliet"}
    assert ids(await walk(client, world.a.headers, params, limit=1)) == expected(world.events, world.a.id, params)
    assert ids(await walk(client, world.a.headers, params, limit=1000)) == expected(world.events, world.a.id, params)


async def test_items_carry_every_field_decrypted(client: AsyncTestClient[Any], world: World) -> None:
    by_id = {e.id: e for e in world.events}
    items = await walk(client, world.a.headers, {}, limit=1000)
    assert len(items) == sum(1 for e in world.events if e.tenant_id == world.a.id)
    for item in items:
        ev = by_id[uuid.UUID(item["id"])]
        assert item["tenant_id"] == str(world.a.id)
        assert datetime.fromisoformat(item["timestamp"]) == ev.timestamp
        for name in ("action", "resource_type", "resource_id", "user_id", "session_id", "request_id", "severity",
                     "ip_address", "user_agent", "message", "metadata", "before_state", "after_state"):  # fmt: skip
            assert item[name] == getattr(ev, name), name
        assert item["received_at"]


async def test_default_limit_and_next_cursor(client: AsyncTestClient[Any], world: World) -> None:
    response = await client.get("/api/v1/logs", headers=world.a.headers)
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 50 and isinstance(body["next_cursor"], str)
    assert ids(body["items"]) == expected(world.events, world.a.id, {})[:50]
    trailing = await client.get("/api/v1/logs/", headers=world.a.headers)
    assert trailing.status_code == 200 and trailing.json()["items"] == body["items"]
    last = await client.get("/api/v1/logs", params={"user_id": "nobody"}, headers=world.a.headers)
    assert last.json() == {"items": [], "next_cursor": None}


async def test_page_response_headers(client: AsyncTestClient[Any], world: World) -> None:
    response = await client.get("/api/v1/logs", params={"limit": "3"}, headers=world.a.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert "ratelimit-remaining" in response.headers and "x-request-id" in response.headers


async def test_openapi_documents_the_list_parameters(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/v1/logs"]["get"]
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(params) == {
        "start_time", "end_time", "user_id", "action", "resource_type", "resource_id", "severity", "session_id",
        "request_id", "ip_address", "q", "limit", "cursor", "exclude_user_id", "exclude_action",
        "exclude_resource_type", "include_system",
    }  # fmt: skip
    for name in ("user_id", "action", "resource_type", "severity", "exclude_action"):
        assert params[name]["schema"]["type"] == "array" and params[name]["explode"] is True, name
    assert params["include_system"]["schema"] == {"type": "boolean", "default": False}
    assert params["start_time"]["schema"]["format"] == "date-time"
    assert params["severity"]["schema"]["items"]["enum"] == ["INFO", "WARNING", "ERROR", "CRITICAL"]
    assert params["limit"]["schema"]["maximum"] == 1000
    assert "200" in operation["responses"] and "422" in operation["responses"]


async def test_get_by_id_and_tenant_isolation(client: AsyncTestClient[Any], world: World) -> None:
    own = next(e for e in world.events if e.tenant_id == world.a.id and e.metadata)
    other = next(e for e in world.events if e.tenant_id == world.b.id)
    response = await client.get(f"/api/v1/logs/{own.id}", headers=world.a.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(own.id) and body["metadata"] == own.metadata and body["message"] == own.message
    assert (await client.get(f"/api/v1/logs/{own.id}/", headers=world.a.headers)).status_code == 200
    for missing in (other.id, uuid.uuid4()):
        response = await client.get(f"/api/v1/logs/{missing}", headers=world.a.headers)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/api/v1/logs/{other.id}", headers=world.b.headers)).status_code == 200
    # filters that would match the other tenant's rows never reach them
    assert ids(await walk(client, world.a.headers, {"request_id": other.request_id or "req-1"})) == expected(
        world.events, world.a.id, {"request_id": other.request_id or "req-1"}
    )


async def test_roles_and_authentication(client: AsyncTestClient[Any], world: World) -> None:
    assert (await client.get("/api/v1/logs")).status_code == 401
    for role in (Role.ADMIN, Role.USER, Role.AUDITOR):
        who = reader(client, world.a.id, role)
        assert (await client.get("/api/v1/logs", params={"limit": 1}, headers=who.headers)).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}, "start_time"),
        ({"start_time": "2026-01-01T00:00:00"}, "start_time"),
        ({"end_time": "2026-01-01"}, "end_time"),
        ({"end_time": "yesterday"}, "end_time"),
        ({"severity": "FATAL"}, "severity"),
        ({"severity": ["ERROR", "LOUD"]}, "severity"),
        ({"ip_address": "10.0.0.300"}, "ip_address"),
        ({"ip_address": "not-an-ip"}, "ip_address"),
        ({"action": "lower"}, "action"),
        ({"exclude_action": "lower"}, "exclude_action"),
        ({"exclude_user_id": "x" * 257}, "exclude_user_id"),
        ({"action": ["CREATE", "nope"]}, "action"),
        ({"include_system": "maybe"}, "include_system"),
        ({"resource_type": [f"t{i}" for i in range(101)]}, "resource_type"),
        ({"resource_type": "x" * 65}, "resource_type"),
    ],
)
async def test_invalid_parameters_are_named(client: AsyncTestClient[Any], params: dict[str, Any], field: str) -> None:
    await quiet(client)
    tenant = await new_tenant(client)
    response = await client.get("/api/v1/logs", params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422 and field in body["detail"]
    assert field in [e["field"] for e in body["errors"]]


async def test_several_bad_parameters_are_all_named(client: AsyncTestClient[Any]) -> None:
    await quiet(client)
    tenant = await new_tenant(client)
    response = await client.get(
        "/api/v1/logs", params={"limit": "0", "severity": "NOPE", "ip_address": "x"}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"limit", "severity", "ip_address"}


async def test_zone_offsets_are_honoured(client: AsyncTestClient[Any]) -> None:
    await quiet(client)
    tenant = await new_tenant(client)
    ts = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ev = Ev(tenant_id=tenant.id, timestamp=ts)
    await insert_events(runtime_of(client), [ev])
    # 14:00+02:00 == 12:00Z: both bounds inclusive; an unescaped "+" (read as a space) still works
    for raw in ("2026-03-01T14:00:00+02:00", "2026-03-01T14:00:00 02:00"):
        response = await client.get(
            f"/api/v1/logs?start_time={raw.replace('+', '%2B')}&end_time={raw.replace('+', '%2B')}",
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert ids(response.json()["items"]) == [ev.id]


async def test_tampered_payload_fails_closed(client: AsyncTestClient[Any], database: Database, world: World) -> None:
    one, two = [e for e in world.events if e.tenant_id == world.a.id and e.metadata][:2]
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:  # move one row's ciphertext onto another row
        await conn.execute(
            "UPDATE audit_logs SET payload = (SELECT payload FROM audit_logs WHERE id = $1) WHERE id = $2",
            two.id,
            one.id,
        )
    finally:
        await conn.close()
    response = await client.get(f"/api/v1/logs/{one.id}", headers=world.a.headers)
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "event payload failed integrity check"
    assert "errors" not in body and msgspec.json.encode(two.metadata).decode() not in response.text
    listing = await client.get("/api/v1/logs", params={"limit": 1000}, headers=world.a.headers)
    assert listing.status_code == 500 and listing.json()["detail"] == "event payload failed integrity check"
    # the untouched row still reads fine
    assert (await client.get(f"/api/v1/logs/{two.id}", headers=world.a.headers)).status_code == 200


async def test_search_view_shows_only_the_current_tenant(client: AsyncTestClient[Any], world: World) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    runtime = runtime_of(client)
    async with runtime.db.system() as session:  # no tenant set: nothing at all
        assert (await session.execute(text("SELECT count(*) FROM audit_logs_fts"))).scalar_one() == 0
    async with runtime.db.tenant(world.a.id) as session:
        # the view applies the search itself (migrations 0010, 0014: a tsquery): one matching every message
        await session.execute(text("SELECT set_config('auditlog.search', :q, true)"), {"q": " | ".join(VOCAB)})
        tenants = (await session.execute(text("SELECT DISTINCT tenant_id FROM audit_logs_fts"))).scalars().all()
        assert tenants == [world.a.id]
    with pytest.raises(DBAPIError, match="permission denied"):
        async with runtime.db.tenant(world.a.id) as session:
            await session.execute(text("DELETE FROM audit_logs_fts"))


async def test_values_are_bound_never_spliced(client: AsyncTestClient[Any], world: World) -> None:
    for params in ({"user_id": "u1' OR '1'='1"}, {"resource_id": "r1\\' --"}):
        response = await client.get("/api/v1/logs", params=params, headers=world.a.headers)
        assert response.status_code == 200, (params, response.text)
        assert response.json()["items"] == []
    own = {str(e.id) for e in world.events if e.tenant_id == world.a.id}
    for q in ("'); DROP TABLE audit_logs; --", "alpha & | ! ( :* <->", '"unclosed', "-", "or"):
        response = await client.get("/api/v1/logs", params={"q": q}, headers=world.a.headers)
        assert response.status_code == 200, (q, response.text)
        assert {i["id"] for i in response.json()["items"]} <= own
    assert len(await walk(client, world.a.headers, {})) == len(own)
