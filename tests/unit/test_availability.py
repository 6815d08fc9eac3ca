"""``database_unavailable``: connection failures (503) told apart from every other error (500 or 4xx)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

from db.availability import database_unavailable


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)  # type: ignore[arg-type]


def test_connection_failures_are_unavailable() -> None:
    assert database_unavailable(asyncpg.AdminShutdownError("terminating connection"))
    assert database_unavailable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert database_unavailable(asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"))
    assert database_unavailable(asyncpg.TooManyConnectionsError("too many clients"))
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert database_unavailable(_wrapped(Exception("gone"), invalidated=True))
    assert database_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    wrapped = _wrapped(Exception("adapted"))
    wrapped.__cause__ = asyncpg.InterfaceError("connection is closed")
    assert database_unavailable(wrapped)


def test_other_errors_are_not() -> None:
    assert not database_unavailable(ValueError("bad"))
    assert not database_unavailable(asyncpg.UniqueViolationError("duplicate key"))
    assert not database_unavailable(asyncpg.QueryCanceledError("statement timeout"))
    assert not database_unavailable(
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    )
    assert not database_unavailable(FileNotFoundError("a lake file"))  # not raised by asyncpg's connect


def test_oserror_from_asyncpg_connect_is_unavailable() -> None:
    async def connect() -> None:
        await asyncpg.connect("postgresql://nobody@/none?host=/nonexistent-socket-dir&port=5432")

    import asyncio

    try:
        asyncio.run(connect())
    except OSError as exc:
        assert database_unavailable(exc)
    else:
        raise AssertionError("connecting to a missing socket must fail")
