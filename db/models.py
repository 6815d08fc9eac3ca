"""SQLAlchemy models of the tables served through tenant repositories (the migrations, not these, create the
schema; a table gets a model when a repository needs one).

Every tenant-owned model carries ``tenant_id`` first in its primary key, so the schema can be
distributed by tenant (Citus) and every query can be pruned to one tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, MetaData, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AlertDelivery", "AlertRule", "ApiKey", "Base", "TenantOwned", "User"]


class Base(DeclarativeBase):
    metadata = MetaData()


class TenantOwned:
    """Marker: rows of this model belong to exactly one tenant (RLS-guarded)."""

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)


class User(TenantOwned, Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    """Always masked; the original is only in the ``mask_users`` vault."""
    phone: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Soft deletion (migration 0009): the row stays so old events keep naming a real user."""


class ApiKey(TenantOwned, Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    public_id: Mapped[str] = mapped_column(Text)
    """The non-secret part of the key, used to find the row."""
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AlertRule(TenantOwned, Base):
    __tablename__ = "alert_rules"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    match: Mapped[dict[str, Any]] = mapped_column(JSONB)
    threshold: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[int] = mapped_column(Integer)
    cooldown_seconds: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str] = mapped_column(Text)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    """The webhook signing secret, encrypted with the tenant's data key."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AlertDelivery(TenantOwned, Base):
    __tablename__ = "alert_deliveries"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(UUID)
    firing_id: Mapped[uuid.UUID] = mapped_column(UUID)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default="now()")
