"""Cursor pagination over HTTP: stable under concurrent inserts, and refused when forged or rebound."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.test_search import (
    Ev,
    World,
    expected,
    generate,
    ids,
    insert_events,
    make_world,
    new_tenant,
    quiet,
    reader,
    runtime_of,
)


@pytest.fixture
async def world(client: AsyncTestClient[Any]) -> World:
    return await make_world(client)


async def _first_page(client: AsyncTestClient[Any], headers: dict[str, str], params: dict[str, Any]) -> str:
    response = await client.get("/api/v1/logs", params={**params, "limit": 10}, headers=headers)
    assert response.status_code == 200, response.text
    cursor = response.json()["next_cursor"]
    assert cursor
    return str(cursor)


async def test_pages_are_disjoint_and_complete_while_events_arrive(client: AsyncTestClient[Any], world: World) -> None:
    runtime = runtime_of(client)
    existing = list(world.events)
    for params in ({}, {"severity": ["ERROR", "CRITICAL", "WARNING"]}, {"q": "alpha or bravo"}):
        want = expected(existing, world.a.id, params)  # what existed when this walk started
        seen: list[uuid.UUID] = []
        cursor = None
        page = 0
        while True:
            query: dict[str, Any] = {**params, "limit": 37, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/api/v1/logs", params=query, headers=world.a.headers)
            assert response.status_code == 200, response.text
            body = response.json()
            seen.extend(ids(body["items"]))
            cursor = body["next_cursor"]
            if cursor is None:
                break
            # newer events (and events of the other tenant) land between every two page fetches
            fresh = generate([world.a.id, world.b.id], 5, seed=page + 100, end=datetime.now(UTC))
            for ev in fresh:
                ev.timestamp = datetime.now(UTC) + timedelta(seconds=1)
                ev.severity, ev.message = "ERROR", "alpha bravo"
            await insert_events(runtime, fresh)
            existing.extend(fresh)
            page += 1
        assert len(seen) == len(set(seen)), "a row appeared on two pages"
        assert seen == want, params
        assert page > 3


async def test_bad_and_forged_cursors_are_400_naming_cursor(client: AsyncTestClient[Any], world: World) -> None:
    headers = world.a.headers
    good = await _first_page(client, headers, {"severity": "INFO"})
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    tampered_ts = bytearray(raw)
    tampered_ts[5] ^= 0x01  # move the position by a few microseconds
    tampered_tag = bytearray(raw)
    tampered_tag[-1] ^= 0x80
    forged = [
        "garbage",
        "%%%",
        good[:-2],
        good + "AA",
        base64.urlsafe_b64encode(bytes(tampered_ts)).rstrip(b"=").decode(),
        base64.urlsafe_b64encode(bytes(tampered_tag)).rstrip(b"=").decode(),
    ]
    for cursor in forged:
        response = await client.get("/api/v1/logs", params={"severity": "INFO", "cursor": cursor}, headers=headers)
        assert response.status_code == 400, (cursor, response.text)
        body = response.json()
        assert "cursor" in body["detail"] and body["errors"][0]["field"] == "cursor"
        assert response.headers["content-type"].startswith("application/problem+json")
    # the genuine cursor still works, with another page size too
    ok = await client.get("/api/v1/logs", params={"severity": "INFO", "cursor": good, "limit": 3}, headers=headers)
    assert ok.status_code == 200 and len(ok.json()["items"]) == 3


async def test_cursor_is_bound_to_the_filters(client: AsyncTestClient[Any], world: World) -> None:
    headers = world.a.headers
    good = await _first_page(client, headers, {"severity": "INFO", "action": "CREATE"})
    for other in (
        {"severity": "INFO"},
        {"severity": "ERROR", "action": "CREATE"},
        {"severity": "INFO", "action": "CREATE", "q": "alpha"},
        {"severity": "INFO", "action": "CREATE", "end_time": "2100-01-01T00:00:00Z"},
        {},
    ):
        response = await client.get("/api/v1/logs", params={**other, "cursor": good}, headers=headers)
        assert response.status_code == 400, other
        assert response.json()["errors"][0]["field"] == "cursor"
    # the same filters written differently are the same filter set
    same = {"action": "CREATE", "severity": "info"}
    assert (await client.get("/api/v1/logs", params={**same, "cursor": good}, headers=headers)).status_code == 200


async def test_cursor_from_another_tenant_is_refused(client: AsyncTestClient[Any], world: World) -> None:
    good_b = await _first_page(client, world.b.headers, {})
    response = await client.get("/api/v1/logs", params={"cursor": good_b}, headers=world.a.headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "cursor"
    # another reader of the same tenant may continue it (cursors are bound to tenant and filters only)
    colleague = reader(client, world.b.id)
    assert (await client.get("/api/v1/logs", params={"cursor": good_b}, headers=colleague.headers)).status_code == 200


async def test_cursor_survives_identical_timestamps(client: AsyncTestClient[Any]) -> None:
    await quiet(client)
    tenant = await new_tenant(client)
    ts = datetime(2026, 2, 1, tzinfo=UTC)
    events = [Ev(tenant_id=tenant.id, timestamp=ts) for _ in range(25)]
    await insert_events(runtime_of(client), events)
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/v1/logs", params=params, headers=tenant.headers)).json()
        seen.extend(ids(body["items"]))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((e.id for e in events), reverse=True)
