"""``POST /api/v1/chat`` with the offline model against the real service: the seed question against the
``GET /logs`` oracle, follow-ups, conversations private to their tenant and user, the audited read, and
progress as Server-Sent Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.read_audit import get_recorder
from tests.conftest import ApiClient, make_tenant
from tests.integration.analytics_data import listed_ids
from tests.integration.chat_data import seed

SEED = "Show all ERROR logs for tenant X between 2025-07-01 and 2025-07-24"


async def _ask(client: ApiClient, headers: dict[str, str], question: str, conversation_id: str | None = None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"question": question}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = await client.post("/api/v1/chat", json=body, headers=headers, **extra)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _ids(answer: dict[str, Any]) -> list[str]:
    column = answer["columns"].index("id")
    return [row[column] for row in answer["rows"]]


async def test_seed_question_and_follow_up_match_get_logs(client: ApiClient) -> None:
    a, b = await make_tenant(client), await make_tenant(client)
    now = datetime.now(UTC)
    events = await seed(client, a, now)
    await seed(client, b, now)  # another tenant's events are never counted

    answer = await _ask(client, a.auditor, SEED)
    window = {"start_time": "2025-07-01T00:00:00Z", "end_time": "2025-07-24T23:59:59.999999Z"}
    oracle = await listed_ids(client, a.auditor, {**window, "severity": "ERROR"})
    assert oracle and _ids(answer) == oracle  # the same events, newest first like GET /logs
    assert answer["row_count"] == len(oracle) and answer["truncated"] is False
    assert f"Found {len(oracle)} ERROR events between 2025-07-01 and 2025-07-24 23:59:59 UTC" in answer["answer"]
    assert "Only your own tenant's events are visible" in answer["answer"]
    assert answer["sql"].startswith("SELECT") and "ERROR" in answer["sql"]

    # a follow-up narrows the previous question
    follow = await _ask(client, a.auditor, "and only the failed ones?", answer["conversation_id"])
    assert follow["conversation_id"] == answer["conversation_id"]
    action = {e["id"]: e["action"] for e in events}
    expected = [i for i in oracle if "FAIL" in action[i]]
    assert expected and _ids(follow) == expected
    # and another one replaces the window, keeping the rest
    week = await _ask(client, a.auditor, "same for the last 7 days", answer["conversation_id"])
    start = now - timedelta(days=7)
    expected_week = [e["id"] for e in events
                     if e["severity"] == "ERROR" and "FAIL" in e["action"] and e["ts"] >= start]  # fmt: skip
    assert sorted(_ids(week)) == sorted(expected_week)

    history = await client.get(f"/api/v1/chat/{answer['conversation_id']}", headers=a.auditor)
    assert history.status_code == 200, history.text
    messages = history.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert [m["content"] for m in messages[::2]] == [SEED, "and only the failed ones?", "same for the last 7 days"]
    assert messages[1]["sql"] == answer["sql"] and messages[3]["sql"] == follow["sql"]
    assert messages[1]["content"] == answer["answer"]


async def test_conversations_are_private_to_tenant_and_user(client: ApiClient) -> None:
    a, b = await make_tenant(client), await make_tenant(client)
    answer = await _ask(client, a.admin, "how many events are there?")
    path = f"/api/v1/chat/{answer['conversation_id']}"
    assert (await client.get(path, headers=a.admin)).status_code == 200
    assert (await client.get(path, headers=b.admin)).status_code == 404  # another tenant
    assert (await client.get(path, headers=a.user)).status_code == 404  # another user of the same tenant
    # nor can they continue it
    body = {"question": "and only the failed ones?", "conversation_id": answer["conversation_id"]}
    assert (await client.post("/api/v1/chat", json=body, headers=b.admin)).status_code == 404
    assert (await client.post("/api/v1/chat", json=body, headers=a.user)).status_code == 404
    assert (await client.get(path, headers=a.admin)).json()["messages"][-1]["content"] == answer["answer"]


async def test_bad_bodies_are_422(client: ApiClient) -> None:
    a = await make_tenant(client)
    for body in ({"question": "   "}, {"question": ""}, {"question": "x" * 2001}, {"question": "q", "extra": 1},
                 {"question": "q", "conversation_id": "nope"}, {}):  # fmt: skip
        response = await client.post("/api/v1/chat", json=body, headers=a.admin)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    blank = await client.post("/api/v1/chat", json={"question": "  "}, headers=a.admin)
    assert blank.status_code == 422 and "question" in blank.text


async def test_asking_is_an_audited_query(client: ApiClient) -> None:
    a = await make_tenant(client)
    await seed(client, a, datetime.now(UTC))
    answer = await _ask(client, a.user, "how many CRITICAL events?")
    await get_recorder(client.app.state.runtime).flush()
    params = {"action": "QUERY", "resource_type": "audit_log", "include_system": "true", "limit": 100}
    listed = (await client.get("/api/v1/logs", params=params, headers=a.admin)).json()["items"]
    chat = [e for e in listed if e["metadata"].get("route") == "/api/v1/chat"]
    assert len(chat) == 1
    record = chat[0]
    assert record["resource_id"] == answer["conversation_id"]
    assert record["metadata"]["sql"] == answer["sql"]
    assert record["metadata"]["count"] == 1
    # the agent does not count its own read records
    again = await _ask(client, a.user, "how many CRITICAL events?")
    assert again["rows"] == answer["rows"]


async def test_progress_is_streamed_as_server_sent_events(client: ApiClient) -> None:
    a = await make_tenant(client)
    await seed(client, a, datetime.now(UTC))
    headers = {**a.auditor, "Accept": "text/event-stream"}
    response = await client.post("/api/v1/chat", json={"question": "top 3 users"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream"), response.text[:500]
    import json

    events = []
    for block in response.text.replace("\r\n", "\n").strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    assert [kind for kind, _ in events] == ["sql", "rows", "answer"]
    sql, rows, answer = (data for _, data in events)
    assert sql["sql"] == rows["sql"] == answer["sql"]
    assert rows["rows"] == answer["rows"] and len(answer["rows"]) == 3
    assert answer["answer"].startswith("Top 3 by user")
    saved = await client.get(f"/api/v1/chat/{answer['conversation_id']}", headers=a.auditor)
    assert saved.status_code == 200 and len(saved.json()["messages"]) == 2
