"""``POST /api/v1/chat`` (ask; JSON, or progress as Server-Sent Events) and ``GET /api/v1/chat/{id}`` (a
conversation). Both are the caller's own: another tenant's conversation, or another user's, is a ``404``.
Every question is recorded as a ``QUERY`` read, with the statement that ran (or the refusal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from analytics.agent import AskDeps, Turn
from analytics.engine import QueryTimeout
from app.auth.principal import Principal
from app.chat.schemas import ChatIn, ChatOut, ConversationOut
from app.chat.service import ROUTE, ModelUnavailable, answer_question
from app.chat.store import conversation_exists, load_messages, load_turns, tenant_keyring
from app.dependencies import runtime_of
from app.guards import READERS, principal_of
from app.read_audit import record_request_read
from app.runtime import Runtime
from app.web.errors import ApiError, NotFound

__all__ = ["ChatController"]

log = logging.getLogger("auditlog.chat")

_NOT_FOUND = ResponseSpec(None, description="No such conversation of the caller (another tenant's or user's)")
_ASK_DESCRIPTION = (
    "Ask the analyst agent a question about the caller's tenant's events in plain language. The agent writes "
    "DuckDB SQL over the view `events` (the tenant's Parquet lake plus the events not yet exported; the "
    "service's own read records left out, as in `GET /logs`). Every statement is checked before it runs (one "
    "read-only SELECT over `events`, allow-listed functions, no files, URLs, settings or other schemas) and "
    "runs sandboxed with a limit of 1,000 rows and 10 s; a refused statement is not run and the answer says "
    "why (`refused`, an extension). `sql`, `columns`, `rows`, `row_count` and `truncated` are those of the last "
    "statement that ran, as the server ran it. With `conversation_id` the question continues one of the "
    'caller\'s conversations ("and only the failed ones?"); without, a new one starts. Recorded as a `QUERY` '
    "read.\n\nWith `Accept: text/event-stream` the progress is streamed as Server-Sent Events: `sql` "
    '(`{"sql"}`, as soon as a statement passes the check), `refused` (`{"sql", "reason"}`), `rows` (`{"sql", '
    '"columns", "rows", "row_count", "truncated"}`), then `answer` (the JSON body below) or `error` (a '
    "problem object), and the stream ends.\n\n`AUDIT_LLM_MODEL` unset: a built-in offline model answers "
    "common questions (counts, breakdowns, top-N, series, listings by severity, action, resource type, user, "
    "IP, metadata key and time) with no network."
)


def _trimmed_question(data: ChatIn) -> str:
    question = data.question.strip()
    if not question:
        raise ApiError(
            422, "invalid body", errors=[{"field": "question", "pointer": "/question", "message": "is blank"}]
        )
    return question


async def _turns(runtime: Runtime, principal: Principal, conversation_id: uuid.UUID | None) -> list[Turn]:
    if conversation_id is None:
        return []
    async with runtime.db.tenant(principal.tenant_id) as session:
        if not await conversation_exists(session, principal.tenant_id, conversation_id, principal.subject_id):
            raise NotFound("conversation")
        keyring = await tenant_keyring(runtime.keyrings, session, principal.tenant_id)
        return await load_turns(session, keyring, principal.tenant_id, conversation_id)


def _audit(request: Request[Any, Any, Any], runtime: Runtime, principal: Principal, out: ChatOut, deps: AskDeps,
           conversation_id: uuid.UUID) -> None:  # fmt: skip
    """The question as a ``QUERY`` read: what ran (the last statement, how many rows) or why nothing did."""
    details: dict[str, Any] = {"conversation_id": str(conversation_id), "sql": out.sql, "count": out.row_count,
                               "truncated": out.truncated, "statements": len(deps.ran)}  # fmt: skip
    if out.refused:
        details["refused"] = out.refused
    record_request_read(request, runtime, principal, "QUERY", ROUTE, details, resource_id=str(conversation_id))


def _wants_stream(request: Request[Any, Any, Any]) -> bool:
    return "text/event-stream" in request.headers.get("accept", "").lower()


async def _answer(request: Request[Any, Any, Any], runtime: Runtime, principal: Principal, question: str,
                  conversation_id: uuid.UUID, turns: list[Turn], emit: Any = None) -> ChatOut:  # fmt: skip
    try:
        out, deps = await answer_question(runtime, principal, question, conversation_id, turns, emit=emit)
    except QueryTimeout:
        raise ApiError(503, "reading the schema of your events took too long", headers={"Retry-After": "5"}) from None
    except ModelUnavailable as e:
        raise ApiError(503, str(e)) from None
    _audit(request, runtime, principal, out, deps, conversation_id)
    return out


class _EventStream(ServerSentEvent):
    """Server-Sent Events from a handler whose declared (JSON) media type would otherwise win."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


def _sse(kind: str, data: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event=kind)


async def _progress(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    principal: Principal,
    question: str,
    conversation_id: uuid.UUID,
    turns: list[Turn],
) -> AsyncIterator[ServerSentEventMessage]:
    queue: asyncio.Queue[ServerSentEventMessage | None] = asyncio.Queue()

    async def emit(kind: str, data: dict[str, Any]) -> None:
        await queue.put(_sse(kind, data))

    async def work() -> None:
        try:
            out = await _answer(request, runtime, principal, question, conversation_id, turns, emit)
            await queue.put(_sse("answer", out))
        except ApiError as e:
            await queue.put(_sse("error", {"status": e.status_code, "detail": e.detail}))
        except Exception:
            log.exception("chat answer failed")
            await queue.put(_sse("error", {"status": 500, "detail": "the answer failed"}))
        finally:
            await queue.put(None)

    task = asyncio.create_task(work())
    try:
        while (message := await queue.get()) is not None:
            yield message
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


class ChatController(Controller):
    path = ROUTE
    tags = ["chat"]

    @post(
        ["/"],
        guards=[READERS],
        status_code=200,
        summary="Ask the analyst agent",
        description=_ASK_DESCRIPTION,
        responses={
            404: _NOT_FOUND,
            422: ResponseSpec(None, description="Invalid body (blank or too long `question`); `errors` names it"),
            503: ResponseSpec(
                None,
                description="The tenant's events could not be read in time (`Retry-After`), or the model that "
                "`AUDIT_LLM_MODEL` names cannot be used here (the detail says why)",
            ),
        },
    )
    async def ask(self, request: Request[Any, Any, Any], data: JSONBody[ChatIn]) -> ChatOut:
        runtime = runtime_of(request)
        principal = principal_of(request)
        question = _trimmed_question(data)
        turns = await _turns(runtime, principal, data.conversation_id)
        conversation_id = data.conversation_id or uuid.uuid4()
        if _wants_stream(request):
            stream = _EventStream(
                _progress(request, runtime, principal, question, conversation_id, turns),
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            return stream  # type: ignore[return-value]
        return await _answer(request, runtime, principal, question, conversation_id, turns)

    @get(
        ["/{conversation_id:uuid}"],
        guards=[READERS],
        summary="A conversation with the analyst agent",
        description="The caller's own conversation, its messages oldest first (an answer with the SQL it ran).",
        responses={404: _NOT_FOUND},
    )
    async def conversation(
        self, request: Request[Any, Any, Any], conversation_id: FromPath[uuid.UUID]
    ) -> ConversationOut:
        runtime = runtime_of(request)
        principal = principal_of(request)
        async with runtime.db.tenant(principal.tenant_id) as session:
            if not await conversation_exists(session, principal.tenant_id, conversation_id, principal.subject_id):
                raise NotFound("conversation")
            keyring = await tenant_keyring(runtime.keyrings, session, principal.tenant_id)
            messages = await load_messages(session, keyring, principal.tenant_id, conversation_id)
        return ConversationOut(id=conversation_id, messages=messages)
