"""Conversions between the SQLAlchemy URLs in settings and the plain DSNs asyncpg/psycopg want."""

from __future__ import annotations

__all__ = ["plain_dsn", "sqlalchemy_url"]


def plain_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` → ``postgresql://...``."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL → the asyncpg SQLAlchemy form."""
    scheme, sep, rest = url.partition("://")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg"}:
        return f"postgresql+asyncpg{sep}{rest}"
    return url
