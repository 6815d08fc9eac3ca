"""Bodies of the chat routes (API.md "The analyst agent")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

__all__ = ["MAX_QUESTION_CHARS", "ChatIn", "ChatOut", "ConversationOut", "MessageOut"]

MAX_QUESTION_CHARS = 2_000


class ChatIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_QUESTION_CHARS)]
    """The question in plain language."""
    conversation_id: uuid.UUID | None = None
    """Continue this conversation (one of the caller's own); omitted: start a new one."""


class ChatOut(msgspec.Struct, kw_only=True):
    conversation_id: uuid.UUID
    answer: str
    """What the rows show, in words; when nothing ran, why."""
    sql: str | None
    """The statement that ran (as checked and run, not as the model wrote it); ``null`` when none ran."""
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    """Rows returned (at most the row limit)."""
    truncated: bool
    """More rows matched than the row limit returned."""
    refused: str | None = None
    """Extension: why the model's statement was refused (nothing ran); ``null`` otherwise."""


class MessageOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["user", "assistant"]
    content: str
    sql: str | None
    created_at: datetime
    unreadable: bool = False
    """Present (``true``) only when the message's data key was destroyed: its ``content`` and ``sql`` are gone."""


class ConversationOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    messages: list[MessageOut]
