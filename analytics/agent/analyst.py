"""The analyst agent: one pydantic-ai ``Agent`` with one tool, ``run_sql``, whatever the model behind it.

``ask`` runs a question (with the conversation so far) against a model - the offline ``FunctionModel`` or any
pydantic-ai model named by ``AUDIT_LLM_MODEL`` (``resolve_model``), through the same code path. Every
statement the model proposes goes through ``sql_guard.check_sql`` and, if accepted, runs in the engine's
sandbox over the caller's tenant ``events`` with a row limit and a time limit (``runner``). A refused or
failing statement goes back to the model as a retry with the reason, at most ``MAX_SQL_RETRIES`` times;
the model's requests per question are bounded too. The tenant is fixed by the caller's ``open_events``:
nothing the model writes chooses it.

The :class:`Answer` carries the model's words and the last statement that ran with its rows, as the server
recorded them (never as the model reports them). When nothing ran because a statement was refused, the
answer says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import duckdb
from pydantic_ai import Agent, ModelRetry, RunContext, UsageLimits
from pydantic_ai.exceptions import AgentRunError
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models import Model

from analytics.agent.catalog import Catalog
from analytics.agent.offline import NOW_MARKER, offline_model
from analytics.agent.runner import OpenEvents, QueryResult, run_checked
from analytics.agent.sql_guard import SqlRefused, check_sql
from analytics.engine import QueryTimeout

__all__ = ["MAX_SQL_RETRIES", "Answer", "AskDeps", "Turn", "ask", "resolve_model"]

log = logging.getLogger("auditlog.agent")

MAX_SQL_RETRIES: Final = 2
MAX_MODEL_REQUESTS: Final = 6
MODEL_ROWS: Final = 200
"""Rows of a result shown to the model (the answer returns up to the row limit)."""

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

INSTRUCTIONS: Final = """\
You are the audit-log analyst of one organisation. Answer the user's question about its audit events by
calling the `run_sql` tool with ONE read-only DuckDB SELECT statement over the view `events`, then say in a
few plain sentences what the rows show (numbers exactly as returned; no invented numbers). Rules:
- Only the view `events` exists; it holds only this organisation's events. No other tables, files, URLs,
  settings, or schemas; no tenant_id column. Statements that try are refused.
- Allowed: SELECT/WITH, joins and subqueries over `events`, aggregates, window functions, string, date and
  JSON functions. Not allowed: table functions (read_csv, range, ...), DDL/DML, SET, PRAGMA, ATTACH, COPY.
- "timestamp" is TIMESTAMPTZ in UTC (quote it: "timestamp"); compare with TIMESTAMPTZ '2025-07-01 00:00:00+00'.
- metadata, before_state and after_state are JSON text: metadata->>'key', json_exists(metadata, '$.key').
- Results are cut at {max_rows} rows; aggregate rather than list when the question asks for numbers.
- If the tool reports an error, fix the statement and call it again; if the question cannot be answered from
  these events, say so.
"""


@dataclass
class Turn:
    """One earlier message of the conversation."""

    role: str
    content: str
    sql: str | None = None


@dataclass
class AskDeps:
    open_events: OpenEvents
    catalog: Catalog
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_rows: int = 1000
    time_limit_s: float = 10.0
    emit: Emit | None = None
    results: list[QueryResult] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(statement, reason) of every statement the guard refused."""
    errors: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    """Every statement that reached the engine, in order."""

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        if self.emit is not None:
            await self.emit(kind, data)


@dataclass
class Answer:
    answer: str
    result: QueryResult | None
    refused: str | None = None
    model: str = ""


def _instructions(ctx: RunContext[AskDeps]) -> str:
    deps = ctx.deps
    now = deps.now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return "\n".join([INSTRUCTIONS.format(max_rows=deps.max_rows), deps.catalog.describe(), f"{NOW_MARKER}{now}"])


async def run_sql(ctx: RunContext[AskDeps], sql: str) -> dict[str, Any]:
    """Run one read-only DuckDB SELECT over the `events` view and return its columns, rows, row_count and
    whether the rows were truncated at the row limit."""
    deps = ctx.deps
    try:
        checked = check_sql(sql)
    except SqlRefused as refusal:
        deps.refused.append((sql, str(refusal)))
        await deps.send("refused", {"sql": sql, "reason": str(refusal)})
        raise ModelRetry(f"refused, not run: {refusal}") from None
    await deps.send("sql", {"sql": checked.sql})
    deps.ran.append(checked.sql)
    try:
        result = await run_checked(deps.open_events, checked, max_rows=deps.max_rows, time_limit=deps.time_limit_s)
    except QueryTimeout as e:
        deps.errors.append(str(e))
        raise ModelRetry(f"{e}; write a cheaper query (aggregate, narrow the time window)") from None
    except duckdb.Error as e:
        message = str(e).splitlines()[0][:500]
        deps.errors.append(message)
        raise ModelRetry(f"DuckDB error: {message}") from None
    deps.results.append(result)
    await deps.send(
        "rows",
        {"sql": result.sql, "columns": result.columns, "rows": result.rows, "row_count": result.row_count,
         "truncated": result.truncated},
    )  # fmt: skip
    return {
        "columns": result.columns,
        "rows": result.rows[:MODEL_ROWS],
        "row_count": result.row_count,
        "truncated": result.truncated,
    }


_agent: Agent[AskDeps, str] = Agent(
    deps_type=AskDeps,
    output_type=str,
    instructions=_instructions,
    tools=[run_sql],
    retries={"tools": MAX_SQL_RETRIES},
    name="auditlog-analyst",
)


def resolve_model(name: str | None) -> Model:
    """The model for ``AUDIT_LLM_MODEL``: unset → the offline model; else pydantic-ai's ``infer_model`` (the
    provider reads its usual environment variables, e.g. ``OPENAI_BASE_URL``/``OPENAI_API_KEY``)."""
    if not name:
        return offline_model()
    from pydantic_ai.models import infer_model

    return infer_model(name)


def history(turns: list[Turn]) -> list[ModelMessage]:
    """The conversation so far as model messages (each answer with the SQL it used)."""
    out: list[ModelMessage] = []
    for turn in turns:
        if turn.role == "user":
            out.append(ModelRequest(parts=[UserPromptPart(turn.content)]))
        else:
            text = turn.content + (f"\n\nSQL used: {turn.sql}" if turn.sql else "")
            out.append(ModelResponse(parts=[TextPart(text)]))
    return out


async def ask(question: str, turns: list[Turn], deps: AskDeps, model: Model, *, timeout_s: float = 60.0) -> Answer:
    """Answer ``question`` (after ``turns``) with ``model``; see the module docstring."""
    output: str | None = None
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            run = await _agent.run(
                question,
                model=model,
                deps=deps,
                message_history=history(turns) or None,
                usage_limits=UsageLimits(request_limit=MAX_MODEL_REQUESTS),
            )
        output = run.output
    except TimeoutError:
        failure = f"the question took longer than {timeout_s:g} s to answer"
    except AgentRunError as e:
        log.info("agent run ended without an answer: %s", e)
        failure = "the model did not reach an answer within its limits"
    result = deps.results[-1] if deps.results else None
    refused = deps.refused[-1][1] if deps.refused and result is None else None
    text = (output or "").strip()
    if refused is not None and refused not in text:
        text = f"I did not run the query: {refused}." + (f" {text}" if text else "")
    elif failure is not None:
        last_error = f" (last error: {deps.errors[-1]})" if deps.errors and result is None else ""
        text = f"I could not answer: {failure}{last_error}." + (f" {text}" if text else "")
    elif result is None and deps.errors and deps.errors[-1] not in text:
        text = f"The query failed: {deps.errors[-1]}." + (f" {text}" if text else "")
    if not text:
        text = "The model gave no answer."
    return Answer(answer=text, result=result, refused=refused, model=model.model_name)
