"""The SQLAlchemy engine over asyncpg, built the same way by the API and the job worker."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.urls import sqlalchemy_url

__all__ = ["make_engine"]


def make_engine(database_url: str, *, pool_size: int, max_overflow: int, application_name: str) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}},
    )
