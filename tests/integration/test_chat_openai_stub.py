"""The analyst agent against a real OpenAI-compatible server: a stub on 127.0.0.1 that speaks the
chat-completions protocol, reached through ``AUDIT_LLM_MODEL=openai-chat:<model>`` with the provider's usual
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. The stub plays a hostile model first (a file read, another
tenant's rows), then asks for real SQL through the ``run_sql`` tool and answers from what the tool returned:
the refusal and the rows travel through the protocol, the numbers are the caller's tenant's only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app
from tests.integration.analytics_data import listed_ids
from tests.integration.chat_data import seed
from tests.servers import free_port
from tests.unit.test_sql_guard import HOSTILE

API_KEY = "sk-stub-7f3a"
MODEL = "stub-analyst"

Step = Callable[[dict[str, Any]], dict[str, Any]]
"""From the request body, the assistant message the stub answers with."""


def call(sql: str) -> Step:
    """A step that asks for ``run_sql(sql)``."""
    return lambda body: {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{len(body['messages'])}",
                "type": "function",
                "function": {"name": "run_sql", "arguments": json.dumps({"sql": sql})},
            }
        ],
    }


def last_tool_result(body: dict[str, Any]) -> str:
    tool = [m for m in body["messages"] if m["role"] == "tool"]
    assert tool, "the model was never told what the tool returned"
    content = tool[-1]["content"]
    return content if isinstance(content, str) else json.dumps(content)


def answer_with_count(template: str) -> Step:
    """A final answer quoting the first value of the rows the tool returned (the model read them)."""

    def step(body: dict[str, Any]) -> dict[str, Any]:
        rows = json.loads(last_tool_result(body))["rows"]
        return {"role": "assistant", "content": template.format(rows[0][0])}

    return step


@dataclass
class StubOpenAI:
    """``POST /v1/chat/completions``: replays ``script`` one step per request, recording every request."""

    script: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        step = self.script.pop(0) if self.script else (lambda _b: {"role": "assistant", "content": "done"})
        message = step(body)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(datetime.now(UTC).timestamp()),
                "model": body.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            }
        )


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StubOpenAI, str]]:
    server = StubOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_an_openai_compatible_model_answers_through_the_tool_and_sees_only_its_tenant(
    stub: tuple[StubOpenAI, str], database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, base_url = stub
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    settings = make_settings(database, tmp_path, llm_model=f"openai-chat:{MODEL}")
    async with running_app(settings) as client:
        a, b = await make_tenant(client), await make_tenant(client)
        await seed(client, a, datetime.now(UTC))
        await seed(client, b, datetime.now(UTC))
        secret = {"action": "B_ONLY_PAYROLL", "resource_type": "payroll", "message": "tenant B secret"}
        assert (await client.post("/api/v1/logs", json=secret, headers=b.admin)).status_code == 201
        total = len(await listed_ids(client, a.auditor, {}))
        errors = len(await listed_ids(client, a.auditor, {"severity": "ERROR"}))

        server.script = [
            call("SELECT * FROM read_csv('/etc/passwd')"),  # refused: never runs
            call("SELECT count(*) AS n FROM events"),
            answer_with_count("There are {} events."),
        ]
        first = await _ask(client, a.auditor, "How many events are there?")
        assert first["answer"] == f"There are {total} events."
        assert first["sql"] == "SELECT COUNT(*) AS n FROM events" and first["rows"] == [[total]]
        assert first["refused"] is None

        # what went over the wire: the configured model and key, the tool, the tenant's catalog, the refusal
        opening = server.requests[0]
        assert opening["headers"]["Authorization"] == f"Bearer {API_KEY}"
        assert opening["body"]["model"] == MODEL
        tools = {t["function"]["name"]: t["function"] for t in opening["body"]["tools"]}
        assert "sql" in tools["run_sql"]["parameters"]["properties"]
        prompt = json.dumps(opening["body"]["messages"])
        assert "Schema: " in prompt and "LOGIN_FAILED" in prompt and "B_ONLY_PAYROLL" not in prompt
        assert "refused, not run: function READ_CSV is not allowed" in last_tool_result(server.requests[1]["body"])
        assert f'"rows":[[{total}]]' in last_tool_result(server.requests[2]["body"]).replace(" ", "")

        # a follow-up carries the conversation (with the SQL used) to the model; another tenant's rows stay out
        def follow(body: dict[str, Any]) -> dict[str, Any]:
            said = json.dumps(body["messages"])
            assert "How many events are there?" in said and "SQL used: SELECT COUNT(*) AS n FROM events" in said
            return call("SELECT count(*) AS n FROM events WHERE severity = 'ERROR'")(body)

        server.script = [
            call("SELECT count(*) AS n FROM events WHERE action = 'B_ONLY_PAYROLL'"),
            follow,
            answer_with_count("{} of them are errors."),
        ]
        second = await _ask(client, a.auditor, "and only the errors?", first["conversation_id"])
        assert second["answer"] == f"{errors} of them are errors." and second["rows"] == [[errors]]
        assert '"rows":[[0]]' in last_tool_result(server.requests[4]["body"]).replace(" ", "")
        assert "secret" not in json.dumps(second)
        assert (await client.get("/healthz")).status_code == 200


async def _ask(client: ApiClient, headers: dict[str, str], question: str, conversation: str | None = None) -> Any:
    body: dict[str, Any] = {"question": question}
    if conversation is not None:
        body["conversation_id"] = conversation
    response = await client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_hostile_statement_from_the_server_is_refused(
    stub: tuple[StubOpenAI, str], database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard's list of hostile statements (files, URLs, other tenants, ATTACH, INSTALL/LOAD, SET, writes,
    smuggled statements), each proposed by the remote model: refused, nothing runs, the server stays up."""
    server, base_url = stub
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    settings = make_settings(database, tmp_path, llm_model=f"openai-chat:{MODEL}")
    async with running_app(settings) as client:
        a = await make_tenant(client)
        await seed(client, a, datetime.now(UTC))
        for sql in HOSTILE:
            server.script = [call(sql), lambda _body: {"role": "assistant", "content": "done"}]
            body = await _ask(client, a.admin, "do it")
            assert body["refused"] and body["sql"] is None and body["rows"] == [], sql
            assert body["answer"].startswith("I did not run the query: ")
        assert (await client.get("/healthz")).status_code == 200
