"""Request and response bodies of retention and cleanup."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

__all__ = ["CleanupOut", "RetentionIn", "RetentionOut"]


class RetentionIn(msgspec.Struct, forbid_unknown_fields=True):
    days: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=3650, description="Events older than this many days leave PostgreSQL (kept in the lake)."
        ),
    ]


class RetentionOut(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    retention_days: int


class CleanupOut(msgspec.Struct, kw_only=True):
    deleted_count: int
    """Events removed from PostgreSQL; every one of them is in the lake."""
    archived: bool
    """True: everything removed was verified in the lake first (always, by construction)."""
    kept_count: int
    """Events older than ``before`` left in PostgreSQL because they are not in the lake yet (committed while
    the cleanup ran, with an old timestamp); a later cleanup removes them."""
    dropped_partitions: int
    """Whole month partitions dropped (the rest were deleted row by row at the edges)."""
    exported_count: int
    """Events the cleanup archived to the lake before removing anything."""
    before: datetime
    lake_watermark: int
    """The tenant's lake watermark after the cleanup: every event with a seq up to it is in the lake."""
