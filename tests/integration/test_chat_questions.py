"""The offline model on a fixed data set: questions of varied phrasing, each with its exact answer computed
here in Python from the events posted (never by the engine), through the real ``POST /api/v1/chat``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.agent.offline import CANNOT
from tests.conftest import ApiClient, make_tenant
from tests.integration.chat_data import JULY, between, by, count, eq, failed, seed, since

Event = dict[str, Any]
Check = Callable[[dict[str, Any]], None]


def counted(n: int) -> Check:
    def check(body: dict[str, Any]) -> None:
        assert body["rows"] == [[n]], body
        assert f"{n:,}" in body["answer"], body["answer"]

    return check


def grouped(expected: Counter[Any], top: int | None = None) -> Check:
    def check(body: dict[str, Any]) -> None:
        want = sorted(expected.items(), key=lambda kv: (-kv[1], "" if kv[0] is None else str(kv[0])))
        got = [tuple(row) for row in body["rows"]]
        if top is not None:
            assert [n for _, n in got] == [n for _, n in want[:top]], (got, want)
            assert all(expected[k] == n for k, n in got), (got, want)
        else:
            assert dict(got) == dict(want), (got, want)
        assert body["answer"].startswith(("By ", "Top ")), body["answer"]

    return check


def series(expected: Counter[str]) -> Check:
    def check(body: dict[str, Any]) -> None:
        assert {row[0][:13]: row[1] for row in body["rows"]} == dict(expected), body["rows"]

    return check


def listed(events: list[Event], *preds: Callable[[Event], bool], limit: int | None = None) -> Check:
    chosen = sorted((e for e in events if all(p(e) for p in preds)), key=lambda e: e["ts"], reverse=True)
    ids = [e["id"] for e in chosen[:limit]]

    def check(body: dict[str, Any]) -> None:
        column = body["columns"].index("id")
        assert [row[column] for row in body["rows"]] == ids, body["sql"]
        assert body["row_count"] == len(ids) and not body["truncated"]
        assert f"Found {len(ids)} " in body["answer"] or (not ids and "There are no" in body["answer"])

    return check


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H")[:10] + "T00"


def questions(events: list[Event], now: datetime) -> list[tuple[str, Check]]:
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    month = today.replace(day=1)
    july = between(JULY, datetime(2025, 8, 1, tzinfo=UTC))
    login_failed = eq("action", "LOGIN_FAILED")
    return [
        ("How many events are there?", counted(len(events))),
        ("How many ERROR events?", counted(count(events, eq("severity", "ERROR")))),
        ("count of critical events between 2025-07-01 and 2025-07-10",
         counted(count(events, eq("severity", "CRITICAL"), between(JULY, datetime(2025, 7, 11, tzinfo=UTC))))),
        ("number of DELETE events on invoices", counted(count(events, eq("action", "DELETE"),
                                                              eq("resource_type", "invoice")))),
        ("How many failed logins?", counted(count(events, login_failed))),
        ("how many failed events in the last 24 hours", counted(count(events, failed, since(day)))),
        ("How many PAYMENT_FAILED events?", counted(count(events, eq("action", "PAYMENT_FAILED")))),
        ("How many logins from 10.0.0.1?", counted(count(events, eq("action", "LOGIN"), eq("ip_address", "10.0.0.1")))),
        ("how many events with metadata key amount",
         counted(count(events, lambda e: "amount" in (e.get("metadata") or {})))),
        ("how many events with metadata key reason in July 2025",
         counted(count(events, lambda e: "reason" in (e.get("metadata") or {}), july))),
        ("how many UPDATE events yesterday", counted(count(events, eq("action", "UPDATE"),
                                                           between(yesterday, today)))),
        ("count of events today", counted(count(events, since(today)))),
        ("how many events this month", counted(count(events, since(month)))),
        ("how many WARNING or ERROR events in the last 7 days",
         counted(count(events, eq("severity", "WARNING", "ERROR"), since(week)))),
        ("count events before 2025-07-10", counted(count(events, lambda e: e["ts"] < datetime(2025, 7, 10,
                                                                                               tzinfo=UTC)))),
        ("how many deletions of documents between 2025-07-01 and 2025-07-31",
         counted(count(events, eq("action", "DELETE"), eq("resource_type", "document"), july))),
        ("events by severity", grouped(by(events, "severity"))),
        ("breakdown by action in July 2025", grouped(by(events, "action", july))),
        ("top 2 users", grouped(by(events, "user_id"), top=2)),
        ("failed logins by IP", grouped(by(events, "ip_address", login_failed))),
        ("most active users last week", grouped(by(events, "user_id", since(week)), top=10)),
        ("events of user u-7 by action", grouped(by(events, "action", eq("user_id", "u-7")))),
        ("which resource type has the most events?", grouped(by(events, "resource_type"), top=10)),
        ("top 3 resources", grouped(by(events, "resource_id"), top=3)),
        ("invoice events by severity", grouped(by(events, "severity", eq("resource_type", "invoice")))),
        ("severity distribution of failed logins", grouped(by(events, "severity", login_failed))),
        ("events per day between 2025-07-01 and 2025-07-03",
         series(Counter(_day(e["ts"]) for e in events if between(JULY, datetime(2025, 7, 4, tzinfo=UTC))(e)))),
        ("hourly events in the last 24 hours",
         series(Counter(e["ts"].astimezone(UTC).strftime("%Y-%m-%dT%H") for e in events if since(day)(e)))),
        ("latest 5 events of user alice", listed(events, eq("user_id", "alice"), limit=5)),
        ("show all CRITICAL logs on 2025-07-05", listed(events, eq("severity", "CRITICAL"), between(
            datetime(2025, 7, 5, tzinfo=UTC), datetime(2025, 7, 6, tzinfo=UTC)))),
        ("list events from 10.0.0.2 since 2025-07-20",
         listed(events, eq("ip_address", "10.0.0.2"), since(datetime(2025, 7, 20, tzinfo=UTC)))),
        ("show the latest 3 ERROR events", listed(events, eq("severity", "ERROR"), limit=3)),
    ]  # fmt: skip


async def test_offline_model_answers_with_exact_numbers(client: ApiClient) -> None:
    a, other = await make_tenant(client), await make_tenant(client)
    now = datetime.now(UTC)
    events = await seed(client, a, now)
    await seed(client, other, now)
    asked = questions(events, datetime.now(UTC))
    assert len(asked) >= 30
    failures = []
    for question, check in asked:
        response = await client.post("/api/v1/chat", json={"question": question}, headers=a.auditor)
        assert response.status_code == 200, response.text
        body = response.json()
        try:
            check(body)
        except AssertionError as e:
            failures.append(f"{question!r}: {body['sql']}\n  {str(e)[:400]}")
    assert not failures, "\n".join(failures)


async def test_follow_ups_build_on_the_previous_question(client: ApiClient) -> None:
    a = await make_tenant(client)
    events = await seed(client, a, datetime.now(UTC))
    july = between(JULY, datetime(2025, 8, 1, tzinfo=UTC))
    chain = [
        ("How many ERROR events in July 2025?", counted(count(events, eq("severity", "ERROR"), july))),
        ("and only the failed ones?", counted(count(events, eq("severity", "ERROR"), july, failed))),
        ("what about CRITICAL?", counted(count(events, eq("severity", "CRITICAL"), july, failed))),
        ("same by user", grouped(by(events, "user_id", eq("severity", "CRITICAL"), july, failed))),
        ("same since 2025-07-15", grouped(by(events, "user_id", eq("severity", "CRITICAL"), failed,
                                                           since(datetime(2025, 7, 15, tzinfo=UTC))))),
    ]  # fmt: skip
    conversation = None
    for question, check in chain:
        body: dict[str, Any] = {"question": question}
        if conversation:
            body["conversation_id"] = conversation
        response = await client.post("/api/v1/chat", json=body, headers=a.user)
        assert response.status_code == 200, response.text
        answer = response.json()
        check(answer)
        conversation = answer["conversation_id"]
    # a new conversation does not inherit: the same follow-up alone is a question of its own
    alone = (await client.post("/api/v1/chat", json={"question": "what about CRITICAL?"}, headers=a.user)).json()
    assert alone["conversation_id"] != conversation
    assert alone["rows"] != [] and alone["sql"] and "FAIL" not in alone["sql"]


async def test_questions_it_cannot_place_get_an_honest_answer(client: ApiClient) -> None:
    a = await make_tenant(client)
    await seed(client, a, datetime.now(UTC))
    for question in ("What's the weather in Paris?", "Tell me a joke", "why?"):
        body = (await client.post("/api/v1/chat", json={"question": question}, headers=a.user)).json()
        assert body["answer"] == CANNOT
        assert body["sql"] is None and body["rows"] == [] and body["row_count"] == 0
