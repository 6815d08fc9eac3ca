"""Metadata is encrypted at rest, everywhere PostgreSQL keeps it (issue 13), while ``q`` still finds it.

The main test posts events whose ``metadata``, ``before_state`` and ``after_state`` hold unique marker words
(one event alone, a bulk, and both again with an ``Idempotency-Key``, replayed once), searches and reads them
back, waits for the read records (which store the searched word in their own metadata), runs a ``CHECKPOINT``
and then reads every file of the test's embedded PostgreSQL (data directory, WAL, server log): no marker may
be there. A control word in ``message`` (a plain column by contract) must be found, so the scan is known to
see what was written. The other tests cover the sealed Idempotency-Key rows, the re-index of rows written
before the blind index (migration 0014), and the analyst chat's conversations: a question, an answer quoting
event values and its SQL are nowhere on disk in clear either, rows written before they were sealed (migration
0018) are still read, a moved or altered sealed message is refused, and destroying the data key leaves the
messages unreadable.
"""

from __future__ import annotations

import asyncio
import mmap
import secrets
import string
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from jobs.search_reindex import reindex_search
from tests.conftest import ApiClient, Database, PgServer, make_tenant
from tests.integration.ingest_helpers import owner, raw_row, search_token

PREFIX = "zqxw"


def _marker() -> str:
    return PREFIX + "".join(secrets.choice(string.ascii_lowercase) for _ in range(14))


def _files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which files under ``root`` hold each needle's bytes (one pass per file, looking for the common prefix)."""
    wanted = {n.encode(): n for n in needles}
    prefix = PREFIX.encode()
    found: dict[str, list[str]] = {n: [] for n in needles}
    for path in root.rglob("*"):
        try:
            if not path.is_file() or path.stat().st_size == 0:
                continue
            with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                at = data.find(prefix)
                while at >= 0:
                    for raw, name in wanted.items():
                        if data[at : at + len(raw)] == raw and str(path) not in found[name]:
                            found[name].append(str(path))
                    at = data.find(prefix, at + 1)
        except (FileNotFoundError, PermissionError, ValueError, OSError):
            continue  # removed while scanning (a dropped database, a recycled WAL segment), or not a regular file
    return found


def _event(meta: str, before: str, after: str, control: str, **extra: Any) -> dict[str, Any]:
    return {
        "action": "UPDATE",
        "resource_type": "invoice",
        "resource_id": "inv-1",
        "message": f"total changed {control}",
        "metadata": {"note": f"approved by {meta}", "nested": {"list": [meta, 7]}},
        "before_state": {"owner": before},
        "after_state": {"owner": after},
        **extra,
    }


async def _until_counted(conn: asyncpg.Connection, sql: str, tenant_id: str, at_least: int, what: str) -> None:
    """Wait until ``sql`` (a count for ``$1`` = the tenant) reaches ``at_least``: records written in the
    background (the read audit) must be on disk before the scan."""
    for _ in range(200):
        if await conn.fetchval(sql, uuid.UUID(tenant_id)) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} was not written")


async def _scan_after_checkpoint(pg_server: PgServer, needles: list[str]) -> dict[str, list[str]]:
    """Flush everything to the data files (``CHECKPOINT``), then which files of the cluster hold each needle."""
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()
    return await asyncio.to_thread(_files_holding, Path(pg_server.embedded.root), needles)


async def test_metadata_is_nowhere_in_clear_on_disk(client: ApiClient, database: Database, pg_server: PgServer) -> None:
    if pg_server.embedded is None:
        pytest.skip(
            "AUDIT_TEST_DATABASE_URL points at an external server: its data directory is not on this machine to scan"
        )
    t = await make_tenant(client)
    control = _marker()
    markers: dict[str, tuple[str, str, str]] = {}
    ids: dict[str, str] = {}

    async def post(kind: str, key: str | None = None) -> None:
        meta, before, after = _marker(), _marker(), _marker()
        markers[kind] = (meta, before, after)
        headers = {**t.user, **({"Idempotency-Key": key} if key else {})}
        if kind.startswith("bulk"):
            body: Any = [_event(meta, before, after, control), _event(_marker(), _marker(), _marker(), control)]
            response = await client.post("/api/v1/logs/bulk", json=body, headers=headers)
            assert response.status_code == 201, response.text
            ids[kind] = response.json()["ids"][0]
        else:
            response = await client.post("/api/v1/logs", json=_event(meta, before, after, control), headers=headers)
            assert response.status_code == 201, response.text
            ids[kind] = response.json()["id"]
        if key:  # the replay comes from the stored (sealed) response
            again = await client.post(
                "/api/v1/logs/bulk" if kind.startswith("bulk") else "/api/v1/logs",
                json=body if kind.startswith("bulk") else _event(meta, before, after, control),
                headers=headers,
            )
            assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
            assert again.content == response.content

    await post("single")
    await post("bulk")
    await post("single-key", key=f"k-{uuid.uuid4()}")
    await post("bulk-key", key=f"k-{uuid.uuid4()}")

    for kind, (meta, before, after) in markers.items():
        page = await client.get("/api/v1/logs", params={"q": meta}, headers=t.auditor)
        assert page.status_code == 200, page.text
        assert [i["id"] for i in page.json()["items"]] == [ids[kind]], kind
        one = await client.get(f"/api/v1/logs/{ids[kind]}", headers=t.auditor)
        assert one.status_code == 200, one.text
        event = one.json()
        assert event["metadata"]["nested"]["list"][0] == meta
        assert event["before_state"] == {"owner": before} and event["after_state"] == {"owner": after}
        # a state is not searchable (only message and metadata values are)
        nothing = await client.get("/api/v1/logs", params={"q": before}, headers=t.auditor)
        assert nothing.status_code == 200 and nothing.json()["items"] == []

    conn = await owner(database)
    try:
        # the read records (holding each searched marker in their metadata) are written before the scan
        await _until_counted(
            conn,
            "SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND resource_type = 'audit_log'",
            t.id,
            3 * len(markers),
            "the read records",
        )
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", uuid.UUID(t.id)) == 2
    finally:
        await conn.close()
    secrets_on_disk = [m for triple in markers.values() for m in triple]
    found = await _scan_after_checkpoint(pg_server, [control, *secrets_on_disk])
    assert found[control], "the control word (message, clear by contract) should be on disk: the scan sees nothing"
    leaks = {m: files for m, files in found.items() if m != control and files}
    assert leaks == {}, leaks


async def test_idempotency_rows_are_sealed_and_old_rows_still_replay(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    word = _marker()
    headers = {**t.user, "Idempotency-Key": "sealed-1"}
    first = await client.post("/api/v1/logs", json=_event(word, _marker(), _marker(), "x"), headers=headers)
    assert first.status_code == 201, first.text
    conn = await owner(database)
    try:
        row = await conn.fetchrow("SELECT request_hash, response FROM idempotency_keys WHERE key = 'sealed-1'")
        assert row is not None
        assert word.encode() not in bytes(row["response"]) and bytes(row["response"])[:1] == b"\x01"
        assert len(bytes(row["request_hash"])) > 32  # encrypted, not the bare SHA-256 of the body
        # tampering with the sealed response is caught, never replayed
        await conn.execute(
            "UPDATE idempotency_keys SET response = overlay(response placing '\\x00'::bytea from 30)"
            " WHERE key = 'sealed-1'"
        )
        tampered = await client.post("/api/v1/logs", json=_event(word, "a", "b", "x"), headers=headers)
        assert tampered.status_code in (500, 503), tampered.text
        assert word not in tampered.text

        # a row stored before sealing (bare hash, JSON response) is still honoured until it expires
        from app.logs.prepare import request_hash

        body = {"action": "CREATE", "resource_type": "doc"}
        old_response = b'{"id":"00000000-0000-7000-8000-000000000000","old":true}'
        caller = await conn.fetchval("SELECT caller FROM idempotency_keys WHERE key = 'sealed-1'")
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, response) VALUES ($1, $2, 'old-1', $3, $4)",
            uuid.UUID(t.id),
            caller,
            request_hash("POST /logs", msgspec.json.encode(body)),
            old_response,
        )
    finally:
        await conn.close()
    replayed = await client.post("/api/v1/logs", json=body, headers={**t.user, "Idempotency-Key": "old-1"})
    assert replayed.status_code == 201 and replayed.content == old_response
    assert replayed.headers.get("idempotent-replayed") == "true"


async def test_rows_indexed_in_clear_stay_searchable_and_are_reindexed(client: ApiClient, database: Database) -> None:
    """Rows written before migration 0014 (``to_tsvector`` of the metadata in clear) are found by ``q`` before
    and after the re-index job, which leaves only keyed tokens for their metadata words."""
    t = await make_tenant(client)
    tid = uuid.UUID(t.id)
    words = [_marker() for _ in range(3)]
    made = []
    for i, word in enumerate(words):
        response = await client.post(
            "/api/v1/logs", json=_event(word, "b", "a", f"old{i}", metadata={"tag": word}), headers=t.user
        )
        assert response.status_code == 201
        made.append(response.json()["id"])
    conn = await owner(database)
    try:
        # make the three rows what the old writer wrote, and mark them as the tenant's old rows
        for event_id, word in zip(made, words, strict=True):
            await conn.execute(
                "UPDATE audit_logs SET search = to_tsvector('simple', coalesce(message, '') || ' ' || $2) WHERE id = $1",
                uuid.UUID(event_id),
                word,
            )
        upto = await conn.fetchval(
            "SELECT max(seq) FROM audit_logs WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in made]
        )
        await conn.execute("INSERT INTO search_reindex (tenant_id, upto_seq) VALUES ($1, $2)", tid, upto)
        old_rows = await conn.fetchval("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND seq <= $2", tid, upto)
    finally:
        await conn.close()
    for word, event_id in zip(words, made, strict=True):
        row = await raw_row(database, event_id)
        assert row is not None and word in row["search_text"]  # clear, as before the blind index
        page = await client.get("/api/v1/logs", params={"q": word}, headers=t.auditor)
        assert [i["id"] for i in page.json()["items"]] == [event_id]

    runtime = client.app.state.runtime
    ctx = {"db": runtime.db, "keyrings": runtime.keyrings}
    assert await reindex_search(ctx, batch=2) == old_rows  # the tenant's administrative events too, 2 at a time
    assert await reindex_search(ctx) == 0
    conn = await owner(database)
    try:
        state = await conn.fetchrow("SELECT done_rows, finished_at FROM search_reindex WHERE tenant_id = $1", tid)
        assert state["done_rows"] == old_rows and state["finished_at"] is not None
    finally:
        await conn.close()
    for word, event_id in zip(words, made, strict=True):
        row = await raw_row(database, event_id)
        assert row is not None and word not in row["search_text"]
        assert f"'{await search_token(client, t.id, word)}'" in row["search_text"]
        page = await client.get("/api/v1/logs", params={"q": word}, headers=t.auditor)
        assert [i["id"] for i in page.json()["items"]] == [event_id]


async def test_reindex_function_touches_only_old_rows_of_the_bound_tenant(
    client: ApiClient, database: Database
) -> None:
    t, other = await make_tenant(client), await make_tenant(client)
    old = await client.post("/api/v1/logs", json=_event("oldword", "b", "a", "c"), headers=t.user)
    new = await client.post("/api/v1/logs", json=_event("newword", "b", "a", "c"), headers=t.user)
    theirs = await client.post("/api/v1/logs", json=_event("theirword", "b", "a", "c"), headers=other.user)
    rows = {k: await raw_row(database, r.json()["id"]) for k, r in (("old", old), ("new", new), ("theirs", theirs))}
    conn = await owner(database)
    try:
        await conn.execute(
            "INSERT INTO search_reindex (tenant_id, upto_seq) VALUES ($1, $2), ($3, 0)",
            uuid.UUID(t.id),
            rows["old"]["seq"],
            uuid.UUID(other.id),
        )
    finally:
        await conn.close()
    runtime = client.app.state.runtime
    async with runtime.db.tenant(uuid.UUID(t.id)) as session:
        raw = await (await session.connection()).get_raw_connection()
        pg: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        targets = [rows["old"], rows["new"], rows["theirs"]]
        rewritten = await pg.fetchval(
            "SELECT auditlog_reindex_search($1, $2, $3)",
            [r["timestamp"] for r in targets],
            [r["id"] for r in targets],
            ["'hijacked'"] * 3,
        )
        assert rewritten == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the API role itself may not update audit_logs
        async with runtime.db.tenant(uuid.UUID(t.id)) as session:
            raw = await (await session.connection()).get_raw_connection()
            pg = raw.driver_connection  # type: ignore[assignment]
            await pg.execute("UPDATE audit_logs SET search = 'x'::tsvector WHERE id = $1", rows["new"]["id"])
    after = {k: await raw_row(database, r["id"]) for k, r in rows.items()}
    assert after["old"]["search_text"] == "'hijacked'"
    assert after["new"]["search_text"] == rows["new"]["search_text"]
    assert after["theirs"]["search_text"] == rows["theirs"]["search_text"]


class _Quoting:
    """A chat model that runs one statement naming ``sql_word``, then answers quoting ``answer_word`` (as an
    answer quotes the event values it found)."""

    def __init__(self, sql_word: str, answer_word: str) -> None:
        self.sql = f"SELECT count(*) AS n FROM events WHERE user_id = '{sql_word}'"
        self.answer = f"No event of user {answer_word} was found."

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(p, ToolReturnPart) for p in getattr(messages[-1], "parts", ())):
            return ModelResponse(parts=[TextPart(self.answer)])
        return ModelResponse(parts=[ToolCallPart("run_sql", {"sql": self.sql})])


async def _chat(client: ApiClient, headers: dict[str, str], question: str, conversation: str | None = None) -> Any:
    body = {"question": question, **({"conversation_id": conversation} if conversation else {})}
    response = await client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_conversations_are_nowhere_in_clear_on_disk(
    client: ApiClient, database: Database, pg_server: PgServer
) -> None:
    if pg_server.embedded is None:
        pytest.skip(
            "AUDIT_TEST_DATABASE_URL points at an external server: its data directory is not on this machine to scan"
        )
    t = await make_tenant(client)
    question_word, sql_word, answer_word, control = _marker(), _marker(), _marker(), _marker()
    event = {"action": "LOGIN", "resource_type": "session", "message": f"signed in {control}"}
    assert (await client.post("/api/v1/logs", json=event, headers=t.user)).status_code == 201
    model = _Quoting(sql_word, answer_word)
    client.app.state.runtime.services["chat_model"] = FunctionModel(model)
    question = f"what did user {question_word} do?"
    answer = await _chat(client, t.auditor, question)
    assert answer["answer"] == model.answer and sql_word in answer["sql"] and answer["refused"] is None

    history = await client.get(f"/api/v1/chat/{answer['conversation_id']}", headers=t.auditor)
    assert history.status_code == 200, history.text
    messages = history.json()["messages"]
    assert [(m["role"], m["content"], m["sql"]) for m in messages] == [
        ("user", question, None),
        ("assistant", model.answer, answer["sql"]),
    ]
    assert all("unreadable" not in m for m in messages)

    conn = await owner(database)
    try:
        rows = await conn.fetch(
            "SELECT content, sql, sealed FROM conversation_messages WHERE tenant_id = $1", uuid.UUID(t.id)
        )
        assert len(rows) == 2 and all(r["content"] is None and r["sql"] is None for r in rows)
        assert all(bytes(r["sealed"])[:1] == b"\x01" for r in rows)
        # the QUERY read record (its metadata holds the SQL) is written before the scan
        await _until_counted(
            conn,
            "SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND action = 'QUERY'",
            t.id,
            1,
            "the QUERY read record",
        )
    finally:
        await conn.close()
    words = [question_word, sql_word, answer_word]
    found = await _scan_after_checkpoint(pg_server, [control, *words])
    assert found.pop(control), "the control word (message, clear by contract) should be on disk: the scan sees nothing"
    assert {w: files for w, files in found.items() if files} == {}


async def test_conversation_rows_clear_moved_tampered_and_shredded(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    tid = uuid.UUID(t.id)
    client.app.state.runtime.services["chat_model"] = FunctionModel(_Quoting("u-1", "u-2"))
    first = await _chat(client, t.auditor, "first question")
    conversation = uuid.UUID(first["conversation_id"])
    path = f"/api/v1/chat/{conversation}"
    conn = await owner(database)
    try:
        # a message stored before messages were sealed (clear content, no sealed blob) is still read
        await conn.execute(
            "INSERT INTO conversation_messages (tenant_id, conversation_id, id, role, content, sql, created_at)"
            " VALUES ($1, $2, $3, 'user', 'an old question', NULL, now() - interval '1 hour')",
            tid,
            conversation,
            uuid.uuid4(),
        )
        history = (await client.get(path, headers=t.auditor)).json()["messages"]
        assert [m["content"] for m in history] == ["an old question", "first question", first["answer"]]
        assert history[2]["sql"] == first["sql"]
        # and a follow-up (its history read back, clear and sealed rows alike) is stored sealed
        await _chat(client, t.auditor, "second question", str(conversation))
        assert await conn.fetchval(
            "SELECT count(*) FROM conversation_messages WHERE conversation_id = $1 AND sealed IS NOT NULL", conversation
        ) == 4  # fmt: skip

        # a sealed blob moved onto another message (same tenant and conversation) is refused, never shown
        rows = await conn.fetch(
            "SELECT id, role, sealed FROM conversation_messages WHERE conversation_id = $1 AND sealed IS NOT NULL"
            " ORDER BY created_at, role DESC",
            conversation,
        )
        first_q, second_q = rows[0], rows[2]
        assert first_q["role"] == second_q["role"] == "user"
        await conn.execute(
            "UPDATE conversation_messages SET sealed = $2 WHERE id = $1", second_q["id"], first_q["sealed"]
        )
        moved = await client.get(path, headers=t.auditor)
        assert moved.status_code == 500 and "first question" not in moved.text, moved.text
        await conn.execute(
            "UPDATE conversation_messages SET sealed = $2 WHERE id = $1", second_q["id"], second_q["sealed"]
        )
        assert (await client.get(path, headers=t.auditor)).status_code == 200
    finally:
        await conn.close()

    # crypto-shredding: once the data key that sealed them is destroyed, the messages are unreadable
    runtime = client.app.state.runtime
    async with runtime.db.tenant(tid) as session:
        await runtime.keyrings.rotate(session, tid)
    conn = await owner(database)
    try:
        await conn.execute("DELETE FROM tenant_keys WHERE tenant_id = $1 AND key_id = 1", tid)
    finally:
        await conn.close()
    runtime.keyrings._cache.clear()
    history = (await client.get(path, headers=t.auditor)).json()["messages"]
    assert history[0] == {**history[0], "content": "an old question"}  # never sealed
    assert all(m["unreadable"] is True and m["content"] == "" and m["sql"] is None for m in history[1:])
    assert len(history) == 5
    # the conversation goes on, with the messages sealed by the new key
    third = await _chat(client, t.auditor, "third question", str(conversation))
    history = (await client.get(path, headers=t.auditor)).json()["messages"]
    assert [m["content"] for m in history[-2:]] == ["third question", third["answer"]]
