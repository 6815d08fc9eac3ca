"""Answering one question for a caller: the agent's dependencies bound to the caller's tenant, the model,
the conversation's memory, and the audited read.

The tenant is fixed here, from the principal, in ``open_events`` (the engine's sandboxed session over the
tenant's lake and hot tail, service events left out as in ``GET /logs``); the agent and the model only
ever get that function. The model is ``runtime.services["chat_model"]`` when set (tests put a
``FunctionModel`` there), else the one ``AUDIT_LLM_MODEL`` names, else the offline model - one code path.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

from pydantic_ai.models import Model

from analytics.agent import Answer, AskDeps, CatalogCache, Turn, ask, resolve_model
from analytics.agent.analyst import Emit
from analytics.agent.summary import EventSummary, FileSummaries, summarize_events
from analytics.engine import EngineSession
from analytics.tenant import open_tenant_events
from app.auth.principal import Principal
from app.chat.schemas import ChatOut
from app.chat.store import append_exchange
from app.exports.access import engine_of, lake_store_of
from app.logs.query import LogFilters
from app.runtime import Runtime

__all__ = ["ROUTE", "ModelUnavailable", "answer_question", "chat_model"]

log = logging.getLogger("auditlog.chat")

ROUTE: Final = "/api/v1/chat"
MAX_ROWS: Final = 1_000
QUERY_TIME_LIMIT_S: Final = 10.0
ANSWER_TIME_LIMIT_S: Final = 60.0
_ALL_EVENTS: Final = LogFilters()


class ModelUnavailable(RuntimeError):
    """``AUDIT_LLM_MODEL`` names a model this installation cannot build (unknown name, provider package or
    credentials missing); the message says which and why."""


def chat_model(runtime: Runtime) -> Model:
    model = runtime.services.get("chat_model")
    if model is None:
        try:
            model = resolve_model(runtime.settings.llm_model)
        except Exception as e:  # pydantic-ai raises ImportError, UserError, ValueError... by provider
            log.error("AUDIT_LLM_MODEL=%s cannot be used: %s", runtime.settings.llm_model, e)
            raise ModelUnavailable(f"the configured model {runtime.settings.llm_model!r} cannot be used: {e}") from e
        runtime.services["chat_model"] = model
    assert isinstance(model, Model)
    return model


def _catalogs(runtime: Runtime) -> CatalogCache:
    cache = runtime.services.get("chat_catalogs")
    if cache is None:
        cache = runtime.services["chat_catalogs"] = CatalogCache()
    assert isinstance(cache, CatalogCache)
    return cache


def _file_summaries(runtime: Runtime) -> FileSummaries:
    cache = runtime.services.get("chat_file_summaries")
    if cache is None:
        cache = runtime.services["chat_file_summaries"] = FileSummaries()
    assert isinstance(cache, FileSummaries)
    return cache


def tenant_events(runtime: Runtime, tenant_id: uuid.UUID) -> Any:
    """``open_events`` for the agent: the caller's tenant's events projected to ``columns``."""
    engine, store = engine_of(runtime), lake_store_of(runtime)

    @contextlib.asynccontextmanager
    async def open_events(
        columns: tuple[str, ...] | None, filters: LogFilters = _ALL_EVENTS
    ) -> AsyncIterator[EngineSession]:
        async with (
            runtime.db.read(tenant_id) as pg,
            open_tenant_events(
                engine, pg, tenant_id, runtime.keyrings, filters=filters, columns=columns, lake_store=store
            ) as session,
        ):
            yield session

    return open_events


async def answer_question(
    runtime: Runtime,
    principal: Principal,
    question: str,
    conversation_id: uuid.UUID,
    turns: list[Turn],
    *,
    emit: Emit | None = None,
) -> tuple[ChatOut, AskDeps]:
    """Ask the agent, remember the exchange, and return the answer (with the deps, for auditing)."""
    open_events = tenant_events(runtime, principal.tenant_id)

    async def run(sql: str, columns: tuple[str, ...], since: datetime | None) -> list[dict[str, Any]]:
        filters = _ALL_EVENTS if since is None else LogFilters(start_time=since)
        async with open_events(columns, filters) as session:
            return list((await session.query(sql, time_limit=QUERY_TIME_LIMIT_S)).to_pylist())

    async def summarize() -> EventSummary:
        async with runtime.db.read(principal.tenant_id) as pg:
            return await summarize_events(pg, principal.tenant_id, lake_store_of(runtime), _file_summaries(runtime))

    catalog = await _catalogs(runtime).get(principal.tenant_id, run, summarize)
    deps = AskDeps(
        open_events=open_events, catalog=catalog, max_rows=MAX_ROWS, time_limit_s=QUERY_TIME_LIMIT_S, emit=emit
    )
    answer: Answer = await ask(question, turns, deps, chat_model(runtime), timeout_s=ANSWER_TIME_LIMIT_S)
    result = answer.result
    out = ChatOut(
        conversation_id=conversation_id,
        answer=answer.answer,
        sql=result.sql if result else None,
        columns=result.columns if result else [],
        rows=result.rows if result else [],
        row_count=result.row_count if result else 0,
        truncated=result.truncated if result else False,
        refused=answer.refused,
    )
    async with runtime.db.tenant(principal.tenant_id) as session:
        keyring = await runtime.keyrings.get(session, principal.tenant_id)
        await append_exchange(
            session, keyring, principal.tenant_id, conversation_id, principal.subject_id,
            question=question, answer=out.answer, sql=out.sql,
        )  # fmt: skip
    return out, deps
