"""SQLAlchemy models of the tables served through tenant repositories (the migrations, not these, create the
schema; a table gets a model when a repository needs one).

Every tenant-owned model carries ``tenant_id`` first in its primary key, so the schema can be
distributed by tenant (Citus) and every query can be pruned to one tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, MetaData, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["ApiKey", "Base", "TenantOwned", "User"]


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
