"""Conversations in PostgreSQL (``conversations``, ``conversation_messages``: migration 0001, row-level security
forced on both), always through the caller's tenant-bound session and always filtered on the tenant *and*
the user who started the conversation: another tenant's conversation, and another user's of the same
tenant, are both simply not found (a conversation is private to its author, like a search history).

A message's ``content`` and ``sql`` are stored sealed with the tenant's data key (``sealed``, migration 0018,
``app.chat.sealing``); rows written before that hold them in clear and are read as they are. A message whose
data key was destroyed reads as ``unreadable`` with no text (and is left out of a follow-up's history); one
that fails authentication is a detail-free ``500``, as an event's payload is."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from analytics.agent import Turn
from app.chat.schemas import MessageOut
from app.chat.sealing import open_message, seal_message
from app.web.errors import ApiError
from db.crypto import DecryptionError

if TYPE_CHECKING:
    from db.crypto import TenantKeyring
    from db.keyring import KeyringStore

__all__ = [
    "HISTORY_TURNS",
    "append_exchange",
    "conversation_exists",
    "load_messages",
    "load_turns",
    "tenant_keyring",
]

log = logging.getLogger("auditlog.chat")

HISTORY_TURNS: Final = 20
"""Most earlier messages handed to the model with a follow-up."""

_EXISTS = text("SELECT 1 FROM conversations WHERE tenant_id = :t AND id = :id AND user_id = :u")
_CREATE = text(
    "INSERT INTO conversations (tenant_id, id, user_id) VALUES (:t, :id, :u) ON CONFLICT (tenant_id, id) DO NOTHING"
)
_MESSAGE = text(
    "INSERT INTO conversation_messages (tenant_id, conversation_id, id, role, sealed, created_at)"
    " VALUES (:t, :c, :id, :role, :sealed, clock_timestamp())"
)
_MESSAGES = text(
    "SELECT id, role, content, sql, sealed, created_at FROM conversation_messages"
    " WHERE tenant_id = :t AND conversation_id = :c ORDER BY created_at, role DESC, id"
)


async def conversation_exists(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                              user_id: uuid.UUID) -> bool:  # fmt: skip
    row = (await session.execute(_EXISTS, {"t": tenant_id, "id": conversation_id, "u": user_id})).first()
    return row is not None


async def tenant_keyring(keyrings: KeyringStore, session: AsyncSession, tenant_id: uuid.UUID) -> TenantKeyring | None:
    """The tenant's keyring, or ``None`` when all its data keys were destroyed."""
    try:
        return await keyrings.get(session, tenant_id)
    except LookupError:
        return None


def _message(keyring: TenantKeyring | None, conversation_id: uuid.UUID, row: Any) -> MessageOut:
    if row.sealed is None:  # written before messages were sealed
        return MessageOut(role=row.role, content=row.content, sql=row.sql, created_at=row.created_at)
    try:
        opened = open_message(keyring, conversation_id, row.id, row.role, bytes(row.sealed))
    except DecryptionError:
        log.error("message %s of conversation %s failed its integrity check; refusing it", row.id, conversation_id)
        raise ApiError(500, "conversation message failed integrity check") from None
    if opened is None:
        return MessageOut(role=row.role, content="", sql=None, created_at=row.created_at, unreadable=True)
    return MessageOut(role=row.role, content=opened.content, sql=opened.sql, created_at=row.created_at)


async def load_messages(session: AsyncSession, keyring: TenantKeyring | None, tenant_id: uuid.UUID,
                        conversation_id: uuid.UUID) -> list[MessageOut]:  # fmt: skip
    rows = (await session.execute(_MESSAGES, {"t": tenant_id, "c": conversation_id})).all()
    return [_message(keyring, conversation_id, r) for r in rows]


async def load_turns(session: AsyncSession, keyring: TenantKeyring | None, tenant_id: uuid.UUID,
                     conversation_id: uuid.UUID) -> list[Turn]:  # fmt: skip
    messages = [m for m in await load_messages(session, keyring, tenant_id, conversation_id) if not m.unreadable]
    return [Turn(role=m.role, content=m.content, sql=m.sql) for m in messages[-HISTORY_TURNS:]]


async def append_exchange(
    session: AsyncSession,
    keyring: TenantKeyring,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    question: str,
    answer: str,
    sql: str | None,
) -> None:
    """Record a question and its answer, sealed (creating the conversation on its first question)."""
    await session.execute(_CREATE, {"t": tenant_id, "id": conversation_id, "u": user_id})
    params: list[dict[str, Any]] = []
    for role, content, statement in (("user", question, None), ("assistant", answer, sql)):
        message_id = uuid.uuid4()
        sealed = seal_message(keyring, conversation_id, message_id, role, content, statement)
        params.append({"t": tenant_id, "c": conversation_id, "id": message_id, "role": role, "sealed": sealed})
    for p in params:
        await session.execute(_MESSAGE, p)
