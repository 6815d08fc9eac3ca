"""Telling "the database cannot be reached right now" apart from every other database error.

When PostgreSQL is stopped, restarting or refusing connections, a request fails with one of many shapes:
SQLAlchemy's wrapper of an asyncpg error, asyncpg's own error on the raw pool, or a bare ``OSError`` from
connecting to a socket that is gone. The API answers all of them ``503`` with ``Retry-After`` (the client
should retry; nothing is wrong with its request), and the pools reconnect once the server is back.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc

__all__ = ["database_unavailable"]

# connection_exception (08), admin/crash shutdown and "starting up" (57P01-57P03), too_many_connections
_UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "53300"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]


def _raised_by_asyncpg(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means the database is down or not accepting connections."""
    for err in _chain(exc):
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, sa_exc.TimeoutError):  # no pooled connection came free in time
            return True
        if isinstance(err, asyncpg.PostgresError):
            state = str(getattr(err, "sqlstate", "") or "")
            if state.startswith("08") or state in _UNAVAILABLE_STATES:
                return True
        if isinstance(err, asyncpg.InterfaceError) and "connection is closed" in str(err):
            return True
        if isinstance(err, OSError) and _raised_by_asyncpg(err):  # socket gone, refused, reset, timed out
            return True
    return False
