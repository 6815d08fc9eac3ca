"""A ``q`` page is read by the plan that suits the term (``app.logs.search_page``) and is exact whichever it is.

A term in most events ends in the bounded walk, a term in a few per cent of them in the long walk, a rare one in
the GIN index; every page, followed cursor after cursor through the API, equals the matching events computed
here from the events themselves, newest first.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.logs.search_page import WALK_ROWS, fetch_search_page
from app.logs.term_rarity import RareSearches
from db.blind_index import search_index
from db.event_filters import LogFilters
from tests.integration.test_search import Ev, Tenant, insert_events, new_tenant, runtime_of

EVENTS = 3 * WALK_ROWS


def _events(tenant_id: uuid.UUID) -> list[Ev]:
    """``common`` in 90 % of the messages, ``medium`` in 2 %, ``rare`` in 3, ``orchid`` in the metadata of 2;
    one user in ten is ``u1``."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for i in range(EVENTS):
        words = ["event", str(i)]
        if i % 10:
            words.append("common")
        if i % 50 == 3:
            words.append("medium")
        if i in (100, 1500, 2900):
            words.append("rare")
        events.append(
            Ev(
                tenant_id,
                now - timedelta(seconds=i),
                message=" ".join(words),
                user_id="u1" if i % 10 == 3 else f"u{i % 7 + 2}",
                metadata={"tag": "orchid petal"} if i in (10, 2000) else {"tag": "plain"},
            )
        )
    return events


def _matches(ev: Ev, q: str) -> bool:
    words = set(re.findall(r"\w+", (ev.message or "").lower()))
    words |= set(re.findall(r"\w+", str((ev.metadata or {}).get("tag", ""))))
    if q.startswith("-"):
        return q[1:] not in words
    if " or " in q:
        return any(part in words for part in q.split(" or "))
    return all(part in words for part in q.split())


@pytest.fixture
async def tenant(client: AsyncTestClient[Any]) -> tuple[Tenant, list[Ev]]:
    made = await new_tenant(client)
    events = _events(made.id)
    await insert_events(runtime_of(client), events)
    return made, events


@pytest.mark.parametrize(
    ("q", "path"),
    [("common", "walk"), ("-medium", "walk"), ("medium", "long walk"), ("rare", "gin"), ("orchid", "gin")],
)
async def test_each_term_takes_the_path_that_suits_it(
    client: AsyncTestClient[Any], tenant: tuple[Tenant, list[Ev]], q: str, path: str
) -> None:
    made, events = tenant
    runtime = runtime_of(client)
    async with runtime.db.read(made.id) as pg:
        index = search_index(await runtime.keyrings.get(pg, made.id))
        rows, taken = await fetch_search_page(pg, made.id, LogFilters(q=q), index, after=None, limit=50)
    expected = sorted((ev for ev in events if _matches(ev, q)), key=lambda e: (e.timestamp, e.id), reverse=True)
    assert taken == path
    assert [row["id"] for row in rows] == [ev.id for ev in expected[:51]]


@pytest.mark.parametrize(
    ("q", "user"),
    [("common", None), ("medium", None), ("rare", None), ("orchid", None), ("medium or rare", None),
     ("common medium", None), ("common", "u1"), ("medium", "u1")],
)  # fmt: skip
async def test_every_page_through_the_api_is_exact(
    client: AsyncTestClient[Any], tenant: tuple[Tenant, list[Ev]], q: str, user: str | None
) -> None:
    made, events = tenant
    expected = [
        str(ev.id)
        for ev in sorted(events, key=lambda e: (e.timestamp, e.id), reverse=True)
        if _matches(ev, q) and (user is None or ev.user_id == user)
    ]
    params: dict[str, Any] = {"q": q, "limit": 400}
    if user is not None:
        params["user_id"] = user
    got: list[str] = []
    while True:
        response = await client.get("/api/v1/logs", params=params, headers=made.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        got += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert got == expected
    assert expected  # every term here matches something


async def test_a_search_found_rare_skips_the_walk_on_its_next_pages(
    client: AsyncTestClient[Any], tenant: tuple[Tenant, list[Ev]]
) -> None:
    """The first page of a rare term walks, then reads the GIN; the next page of the same search (another cursor)
    goes straight to the GIN and is still exact; another filter set, or a common term, still walks."""
    made, events = tenant
    runtime = runtime_of(client)
    rare = RareSearches()
    expected = sorted((ev for ev in events if _matches(ev, "rare")), key=lambda e: (e.timestamp, e.id), reverse=True)
    async with runtime.db.read(made.id) as pg:
        index = search_index(await runtime.keyrings.get(pg, made.id))
        first, taken = await fetch_search_page(pg, made.id, LogFilters(q="rare"), index, after=None, limit=1, rare=rare)
        assert (taken, [r["id"] for r in first]) == ("gin", [ev.id for ev in expected[:2]])
        after = (expected[0].timestamp, expected[0].id)
        second, taken = await fetch_search_page(
            pg, made.id, LogFilters(q="rare"), index, after=after, limit=1, rare=rare
        )
        assert (taken, [r["id"] for r in second]) == ("known rare", [ev.id for ev in expected[1:3]])
        _, taken = await fetch_search_page(
            pg, made.id, LogFilters(q="rare", user_id=("u1",)), index, after=None, limit=1, rare=rare
        )
        assert taken == "gin"  # another filter set is another search
        _, taken = await fetch_search_page(pg, made.id, LogFilters(q="common"), index, after=None, limit=1, rare=rare)
        assert taken == "walk"
    assert not rare.is_rare(uuid.uuid4(), LogFilters(q="rare").fingerprint())  # per tenant
