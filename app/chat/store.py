"""Conversations in PostgreSQL (``conversations``, ``conversation_messages``: migration 0001, row-level security
forced on both), always through the caller's tenant-bound session and always filtered on the tenant *and*
the user who started the conversation: another tenant's conversation, and another user's of the same
tenant, are both simply not found (a conversation is private to its author, like a search history)."""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from analytics.agent import Turn
from app.chat.schemas import MessageOut

__all__ = ["HISTORY_TURNS", "append_exchange", "conversation_exists", "load_messages", "load_turns"]

HISTORY_TURNS: Final = 20
"""Most earlier messages handed to the model with a follow-up."""

_EXISTS = text("SELECT 1 FROM conversations WHERE tenant_id = :t AND id = :id AND user_id = :u")
_CREATE = text(
    "INSERT INTO conversations (tenant_id, id, user_id) VALUES (:t, :id, :u) ON CONFLICT (tenant_id, id) DO NOTHING"
)
_MESSAGE = text(
    "INSERT INTO conversation_messages (tenant_id, conversation_id, id, role, content, sql, created_at)"
    " VALUES (:t, :c, :id, :role, :content, :sql, clock_timestamp())"
)
_MESSAGES = text(
    "SELECT role, content, sql, created_at FROM conversation_messages WHERE tenant_id = :t AND conversation_id = :c"
    " ORDER BY created_at, role DESC, id"
)


async def conversation_exists(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                              user_id: uuid.UUID) -> bool:  # fmt: skip
    row = (await session.execute(_EXISTS, {"t": tenant_id, "id": conversation_id, "u": user_id})).first()
    return row is not None


async def load_messages(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> list[MessageOut]:
    rows = (await session.execute(_MESSAGES, {"t": tenant_id, "c": conversation_id})).all()
    return [MessageOut(role=r.role, content=r.content, sql=r.sql, created_at=r.created_at) for r in rows]


async def load_turns(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> list[Turn]:
    messages = await load_messages(session, tenant_id, conversation_id)
    return [Turn(role=m.role, content=m.content, sql=m.sql) for m in messages[-HISTORY_TURNS:]]


async def append_exchange(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    question: str,
    answer: str,
    sql: str | None,
) -> None:
    """Record a question and its answer (creating the conversation on its first question)."""
    await session.execute(_CREATE, {"t": tenant_id, "id": conversation_id, "u": user_id})
    params: list[dict[str, Any]] = [
        {"t": tenant_id, "c": conversation_id, "id": uuid.uuid4(), "role": "user", "content": question, "sql": None},
        {"t": tenant_id, "c": conversation_id, "id": uuid.uuid4(), "role": "assistant", "content": answer, "sql": sql},
    ]
    for p in params:
        await session.execute(_MESSAGE, p)
