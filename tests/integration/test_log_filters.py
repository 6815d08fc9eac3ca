"""GET /api/v1/logs: repeatable filters, exclusions and the service's own events (issue 15, finding 3).

Every read is still recorded, but a reader does not find mostly its own reads: read records (``audit_log``)
and administrative events (``auditlog.*``) are listed only with ``include_system=true`` or a
``resource_type`` filter naming them. Checked against the brute-force oracle of ``test_search``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from app.auth.principal import Role
from app.read_audit import get_recorder
from tests.integration.test_search import (
    Ev,
    World,
    expected,
    generate,
    ids,
    insert_events,
    make_world,
    new_tenant,
    reader,
    rfc3339,
    runtime_of,
    walk,
)

SERVICE_TYPES = ["audit_log", "auditlog.user", "auditlog.api_key", "auditlog.session"]


async def _world_with_service_events(client: AsyncTestClient[Any]) -> World:
    world = await make_world(client)
    rng = random.Random(3)
    service = generate([world.a.id, world.b.id], 400, seed=11)
    for ev in service:
        ev.resource_type = rng.choice(SERVICE_TYPES)
        ev.action = "VIEW" if ev.resource_type == "audit_log" else rng.choice(["USER_CREATED", "LOGIN"])
    await insert_events(runtime_of(client), service)
    world.events.extend(service)
    return world


async def test_repeatable_filters_and_exclusions_match_the_oracle(client: AsyncTestClient[Any]) -> None:
    world = await _world_with_service_events(client)
    evs = [e for e in world.events if e.tenant_id == world.a.id]
    mid = sorted(e.timestamp for e in evs)[len(evs) // 2]
    queries: list[dict[str, Any]] = [
        {},
        {"include_system": "true"},
        {"include_system": "false"},
        {"action": ["CREATE", "DELETE"]},
        {"action": ["CREATE", "VIEW"]},
        {"action": ["CREATE", "VIEW"], "include_system": "true"},
        {"resource_type": ["doc", "invoice"]},
        {"resource_type": "audit_log"},
        {"resource_type": ["auditlog.user", "doc"]},
        {"user_id": ["u1", "u2", "u5"]},
        {"user_id": ["u1", "u2"], "action": ["READ", "UPDATE"], "severity": ["INFO", "ERROR"]},
        {"exclude_action": "CREATE"},
        {"exclude_action": ["CREATE", "READ", "VIEW"], "include_system": "1"},
        {"exclude_resource_type": ["doc"]},
        {"exclude_resource_type": ["audit_log"], "include_system": "true"},
        {"exclude_user_id": ["u1", "u2", "u3"]},
        {"exclude_user_id": "u4", "user_id": ["u4", "u5"]},
        {"resource_type": ["doc", "user"], "exclude_action": "LOGIN", "start_time": rfc3339(mid)},
        {"action": ["UPDATE", "DELETE"], "q": "alpha or bravo"},
        {"q": "alpha", "include_system": "true"},
        {"q": "alpha or bravo", "resource_type": ["audit_log", "doc"]},
        {"resource_type": ["audit_log", "auditlog.user"]},
        {"resource_type": ["auditlog.session", "doc"], "severity": ["INFO", "ERROR"], "include_system": "true"},
        {"severity": ["WARNING", "CRITICAL"], "resource_type": ["doc", "invoice", "user"], "exclude_user_id": "u0"},
    ]
    nonempty = 0
    for params in queries:
        want = expected(world.events, world.a.id, params)
        got = ids(await walk(client, world.a.headers, params, limit=37))
        assert got == want, params
        nonempty += bool(want)
    assert nonempty == len(queries)
    # the default leaves out exactly the service events; include_system shows every event of the tenant
    default = set(ids(await walk(client, world.a.headers, {}, limit=1000)))
    everything = set(ids(await walk(client, world.a.headers, {"include_system": "true"}, limit=1000)))
    service = {e.id for e in evs if e.resource_type in SERVICE_TYPES}
    assert service and everything == {e.id for e in evs} and default == everything - service


async def test_cursor_is_bound_to_the_new_filters(client: AsyncTestClient[Any]) -> None:
    world = await _world_with_service_events(client)
    for params, changed in (
        ({"include_system": "true"}, {}),
        ({"action": ["CREATE", "READ"]}, {"action": "CREATE"}),
        ({"exclude_user_id": ["u1", "u2"]}, {"exclude_user_id": "u1"}),
    ):
        first = await client.get("/api/v1/logs", params={**params, "limit": 5}, headers=world.a.headers)
        cursor = first.json()["next_cursor"]
        assert cursor is not None
        same = await client.get(
            "/api/v1/logs", params={**params, "limit": 5, "cursor": cursor}, headers=world.a.headers
        )
        assert same.status_code == 200
        other = await client.get(
            "/api/v1/logs", params={**changed, "limit": 5, "cursor": cursor}, headers=world.a.headers
        )
        assert other.status_code == 400 and other.json()["errors"][0]["field"] == "cursor", params
    # the values of a repeatable filter are a set: their order does not change the cursor's binding
    first = await client.get("/api/v1/logs?action=CREATE&action=READ&limit=5", headers=world.a.headers)
    cursor = first.json()["next_cursor"]
    swapped = await client.get(
        f"/api/v1/logs?action=READ&action=CREATE&limit=5&cursor={cursor}", headers=world.a.headers
    )
    assert swapped.status_code == 200


async def test_a_poller_does_not_see_its_own_reads_by_default(client: AsyncTestClient[Any]) -> None:
    """The issue's poller: ``start_time`` polls found only their own VIEW records (0, 1, 2, 3, 4 new events)."""
    runtime = runtime_of(client)
    tenant = await new_tenant(client)
    poller = reader(client, tenant.id, Role.AUDITOR)
    since = datetime.now(UTC) - timedelta(seconds=1)
    await insert_events(runtime, [Ev(tenant_id=tenant.id, timestamp=since + timedelta(milliseconds=10))])
    seen: list[int] = []
    for _ in range(5):
        page = await client.get("/api/v1/logs", params={"start_time": rfc3339(since)}, headers=poller.headers)
        assert page.status_code == 200
        seen.append(len(page.json()["items"]))
        await get_recorder(runtime).flush()  # the reads are durable before the next poll
    assert seen == [1, 1, 1, 1, 1]
    # every read was recorded, and the poller can ask for them
    params = {"start_time": rfc3339(since), "include_system": "true", "limit": 1000}
    with_reads = (await client.get("/api/v1/logs", params=params, headers=poller.headers)).json()["items"]
    views = [e for e in with_reads if e["resource_type"] == "audit_log"]
    assert len(views) == 5 and {e["user_id"] for e in views} == {str(poller.reader_id)}
    await get_recorder(runtime).flush()
    only_reads = await client.get(
        "/api/v1/logs", params={"start_time": rfc3339(since), "resource_type": "audit_log"}, headers=poller.headers
    )
    assert len(only_reads.json()["items"]) == 6  # the five polls and the include_system read


async def test_get_by_id_returns_a_service_event(client: AsyncTestClient[Any]) -> None:
    runtime = runtime_of(client)
    tenant = await new_tenant(client)
    ev = Ev(tenant_id=tenant.id, timestamp=datetime.now(UTC), action="USER_CREATED", resource_type="auditlog.user")
    await insert_events(runtime, [ev])
    got = await client.get(f"/api/v1/logs/{ev.id}", headers=tenant.headers)
    assert got.status_code == 200 and got.json()["resource_type"] == "auditlog.user"
    listed = await client.get("/api/v1/logs", headers=tenant.headers)
    assert str(ev.id) not in listed.text
    other = await new_tenant(client)
    assert (await client.get(f"/api/v1/logs/{ev.id}", headers=other.headers)).status_code == 404


async def test_the_stream_predicate_leaves_service_events_out(client: AsyncTestClient[Any]) -> None:
    """``filter_predicate`` (used by statements other than the page, e.g. the live stream) applies the same rule."""
    from app.logs.query import LogFilters, filter_predicate

    runtime = runtime_of(client)
    tenant = await new_tenant(client)
    now = datetime.now(UTC)
    events = [
        Ev(tenant_id=tenant.id, timestamp=now, resource_type="doc"),
        Ev(tenant_id=tenant.id, timestamp=now, resource_type="audit_log", action="VIEW"),
        Ev(tenant_id=tenant.id, timestamp=now, resource_type="auditlog.tenant", action="TENANT_CREATED"),
    ]
    await insert_events(runtime, events)
    for filters, want in (
        (LogFilters(), {events[0].id}),
        (LogFilters(include_system=True), {e.id for e in events}),
        (LogFilters(resource_type=("auditlog.tenant",)), {events[2].id}),
        (LogFilters(exclude_resource_type=("doc",), include_system=True), {events[1].id, events[2].id}),
    ):
        args: list[Any] = []

        def bind(value: Any, args: list[Any] = args) -> str:
            args.append(value)
            return f"${len(args)}"

        predicate = filter_predicate(tenant.id, filters, bind)
        async with runtime.db.read(tenant.id) as pg:
            rows = await pg.fetch(f"SELECT id FROM audit_logs WHERE {predicate}", *args)
        assert {r["id"] for r in rows} == want, filters
