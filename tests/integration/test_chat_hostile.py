"""A hostile model behind ``POST /api/v1/chat`` (a pydantic-ai ``FunctionModel`` that emits attacks): nothing
it writes past the SQL guard reaches the engine, what does reach it sees only the caller's tenant, a runaway
query ends within its time limit and the service stays healthy, retries are bounded; and the
``AUDIT_LLM_MODEL`` wiring goes through the same path (pydantic-ai's ``TestModel``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import app.chat.service as chat_service
from analytics.agent.analyst import MAX_SQL_RETRIES
from analytics.agent.catalog import _KEYS_SQL
from analytics.engine import AnalyticsEngine, EngineSession
from tests.conftest import ApiClient, Database, make_settings, make_tenant, running_app
from tests.integration.chat_data import count, eq, seed
from tests.unit.test_sql_guard import HOSTILE


class SpyEngine(AnalyticsEngine):
    """The real engine, recording every statement that reaches DuckDB."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def session(self, *args: Any, **kwargs: Any) -> AsyncIterator[EngineSession]:
        async with super().session(*args, **kwargs) as session:
            query, stream = session.query, session.stream

            async def spy_query(sql: str, *a: Any, **k: Any) -> Any:
                self.statements.append(sql)
                return await query(sql, *a, **k)

            def spy_stream(sql: str, *a: Any, **k: Any) -> Any:
                self.statements.append(sql)
                return stream(sql, *a, **k)

            session.query = spy_query  # type: ignore[method-assign]
            session.stream = spy_stream  # type: ignore[method-assign]
            yield session

    def agent_statements(self) -> list[str]:
        return [s for s in self.statements if s != _KEYS_SQL]


class Scripted:
    """A model that proposes the given statements one after the other (after each tool reply, the next),
    then says ``done``; it records what the tool told it."""

    def __init__(self, *statements: str) -> None:
        self.statements = list(statements)
        self.calls = 0
        self.replies: list[Any] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        for part in getattr(messages[-1], "parts", ()):
            if isinstance(part, ToolReturnPart):
                self.replies.append(part.content)
        if self.statements:
            return ModelResponse(parts=[ToolCallPart("run_sql", {"sql": self.statements.pop(0)})])
        return ModelResponse(parts=[TextPart("done")])


@pytest.fixture
async def app_client(database: Database, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with running_app(make_settings(database, tmp_path)) as client:
        client.app.state.runtime.services["analytics"] = SpyEngine()
        yield client


def _use(client: ApiClient, model: Any) -> None:
    client.app.state.runtime.services["chat_model"] = FunctionModel(model)


def _spy(client: ApiClient) -> SpyEngine:
    engine = client.app.state.runtime.services["analytics"]
    assert isinstance(engine, SpyEngine)
    return engine


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    saved = chat_service.QUERY_TIME_LIMIT_S
    chat_service.QUERY_TIME_LIMIT_S = seconds
    try:
        yield
    finally:
        chat_service.QUERY_TIME_LIMIT_S = saved


async def test_refused_statements_never_reach_the_engine(app_client: ApiClient) -> None:
    a, b = await make_tenant(app_client), await make_tenant(app_client)
    await seed(app_client, a, datetime.now(UTC))
    attacks = [*HOSTILE, f"SELECT * FROM events WHERE tenant_id = '{b.id}'", f'SELECT * FROM "tenant_id={b.id}"']
    for sql in attacks:
        model = Scripted(sql)
        _use(app_client, model)
        response = await app_client.post("/api/v1/chat", json={"question": "do it"}, headers=a.admin)
        assert response.status_code == 200, (sql, response.text)
        body = response.json()
        assert body["refused"], sql
        assert body["sql"] is None and body["rows"] == [] and body["row_count"] == 0
        assert body["answer"].startswith("I did not run the query: ") and body["refused"] in body["answer"]
        assert model.replies and str(model.replies[0]).startswith("refused, not run: ")
    assert _spy(app_client).agent_statements() == []
    assert (await app_client.get("/healthz")).status_code == 200


async def test_what_runs_sees_only_the_callers_tenant(app_client: ApiClient) -> None:
    a, b = await make_tenant(app_client), await make_tenant(app_client)
    events_a = await seed(app_client, a, datetime.now(UTC))
    secret = {"action": "CREATE", "resource_type": "document", "message": "tenant B secret payroll"}
    assert (await app_client.post("/api/v1/logs", json=secret, headers=b.admin)).status_code == 201
    probes = [
        "SELECT count(*) AS n FROM events",
        "SELECT message FROM events WHERE message ILIKE '%secret%'",
        "SELECT count(DISTINCT id) FROM events a JOIN events b USING (id)",
    ]
    _use(app_client, Scripted(*probes))
    response = await app_client.post("/api/v1/chat", json={"question": "everything"}, headers=a.admin)
    body = response.json()
    assert body["sql"] == "SELECT COUNT(DISTINCT id) FROM events AS a JOIN events AS b USING (id)"
    assert body["rows"] == [[len(events_a)]]
    assert "secret" not in response.text.replace("%secret%", "")
    assert _spy(app_client).agent_statements() == [
        "SELECT COUNT(*) AS n FROM events",
        "SELECT message FROM events WHERE message ILIKE '%secret%'",
        body["sql"],
    ]


async def test_a_runaway_query_ends_at_its_time_limit_and_the_service_stays_healthy(app_client: ApiClient) -> None:
    a = await make_tenant(app_client)
    events = await seed(app_client, a, datetime.now(UTC))
    runaway = "SELECT count(*) FROM events a, events b, events c, events d, events e, events f"
    model = Scripted(runaway)
    _use(app_client, model)
    with _time_limit(1.0):
        started = time.monotonic()
        response = await app_client.post("/api/v1/chat", json={"question": "runaway"}, headers=a.admin)
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert elapsed < 15, elapsed
    assert body["sql"] is None and body["rows"] == []
    assert "time limit" in body["answer"]
    assert any("time limit" in str(r) for r in model.replies)
    assert (await app_client.get("/healthz")).status_code == 200
    _use(app_client, Scripted("SELECT count(*) FROM events"))
    after = await app_client.post("/api/v1/chat", json={"question": "count"}, headers=a.admin)
    assert after.status_code == 200 and after.json()["rows"] == [[len(events)]]


async def test_sql_errors_go_back_to_the_model_and_retries_are_bounded(app_client: ApiClient) -> None:
    a = await make_tenant(app_client)
    events = await seed(app_client, a, datetime.now(UTC))
    fixer = Scripted("SELECT no_such_column FROM events", "SELECT count(*) AS n FROM events WHERE severity = 'ERROR'")
    _use(app_client, fixer)
    body = (await app_client.post("/api/v1/chat", json={"question": "errors?"}, headers=a.admin)).json()
    assert "no_such_column" in str(fixer.replies[0]) and str(fixer.replies[0]).startswith("DuckDB error")
    assert body["sql"] == "SELECT COUNT(*) AS n FROM events WHERE severity = 'ERROR'" and body["refused"] is None
    assert body["rows"] == [[count(events, eq("severity", "ERROR"))]]

    stubborn = Scripted(*["SELECT * FROM read_csv('/etc/passwd')"] * 10)
    _use(app_client, stubborn)
    response = await app_client.post("/api/v1/chat", json={"question": "again"}, headers=a.admin)
    assert response.status_code == 200
    assert stubborn.calls == MAX_SQL_RETRIES + 1
    assert response.json()["refused"] == "function READ_CSV is not allowed"
    assert _spy(app_client).agent_statements() == [
        "SELECT no_such_column FROM events",
        "SELECT COUNT(*) AS n FROM events WHERE severity = 'ERROR'",
    ]


async def test_a_configured_model_goes_through_the_same_path(database: Database, tmp_path: Path) -> None:
    # AUDIT_LLM_MODEL=test is pydantic-ai's TestModel: it calls run_sql with made-up SQL, as any model might
    async with running_app(make_settings(database, tmp_path, llm_model="test")) as client:
        client.app.state.runtime.services["analytics"] = SpyEngine()
        a = await make_tenant(client)
        response = await client.post("/api/v1/chat", json={"question": "anything"}, headers=a.admin)
        assert response.status_code == 200, response.text
        from pydantic_ai.models.test import TestModel

        assert isinstance(client.app.state.runtime.services["chat_model"], TestModel)
        body = response.json()
        assert body["refused"] and body["sql"] is None
        assert _spy(client).agent_statements() == []


async def test_a_configured_model_that_cannot_be_built_is_a_clear_503(database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path, llm_model="nosuchprovider:model-x")) as client:
        a = await make_tenant(client)
        response = await client.post("/api/v1/chat", json={"question": "how many events?"}, headers=a.admin)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "nosuchprovider:model-x" in response.json()["detail"]
