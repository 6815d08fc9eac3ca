"""Throttling of password checks per account, per source address and per (account, source) pair.

Why it exists: a hard per-account lock let anyone lock a tenant's ``admin`` out with a dozen requests, and
counting after the check let concurrent guesses run past the limit. Here every attempt is counted *before*
its password is checked, atomically in PostgreSQL (``auditlog_login_reserve``, migration 0009), and an
attempt that may not be checked is refused without a check:

- a (account, source) pair is locked after ``PAIR_LIMIT`` failures, for ``BASE_SECONDS`` doubling with
  each further failure up to ``CAP_SECONDS``. This is what a guesser from one address meets.
- a source is locked the same way after ``SOURCE_LIMIT`` failures across the tenant's accounts (spraying).
- an account is locked after ``ACCOUNT_LIMIT`` failures from any sources, for ``ACCOUNT_LOCK_SECONDS``
  (short, never growing), and only against sources that have failed on it themselves: the owner, logging
  in from an address with no failures, is never refused because of someone else's guesses.

A success refunds its own attempt and clears its pair when nothing else was counted there meanwhile.
Failures are forgotten after ``WINDOW_SECONDS`` without any. Accounts are keyed by a truncated SHA-256 of
the lower-cased username whether the user exists or not, so both cases do the same writes and nothing a
user typed is stored. Admins and the operator clear an account's rows with :func:`unlock`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ACCOUNT_LIMIT",
    "ACCOUNT_LOCK_SECONDS",
    "BASE_SECONDS",
    "CAP_SECONDS",
    "PAIR_LIMIT",
    "SOURCE_LIMIT",
    "WINDOW_SECONDS",
    "Attempt",
    "account_key",
    "reserve",
    "succeeded",
    "unlock",
]

PAIR_LIMIT = 5
SOURCE_LIMIT = 30
ACCOUNT_LIMIT = 50
BASE_SECONDS = 30.0
CAP_SECONDS = 900.0
ACCOUNT_LOCK_SECONDS = 60.0
WINDOW_SECONDS = 3600.0

_RESERVE = text(
    "SELECT allowed, reserved, locked FROM auditlog_login_reserve("
    ":a, :s, :pair, :account, :source, :base, :cap, :account_lock, :window)"
)
_SUCCEEDED = text("SELECT auditlog_login_succeeded(:a, :s, :reserved, :pair)")


@dataclass(frozen=True, slots=True)
class Attempt:
    allowed: bool
    """False: refused without a password check (a lock holds)."""
    reserved: int
    """The pair's failure count including this attempt."""
    locked: str | None
    """Locks this attempt started, if it fails (``pair``, ``account``, ``source``, comma-separated)."""


def account_key(username: str) -> str:
    return hashlib.sha256(username.lower().encode()).hexdigest()[:32]


async def reserve(session: AsyncSession, username: str, source: str) -> Attempt:
    """Count one attempt (in ``session``'s tenant), or refuse it; commit before checking the password."""
    row = (
        await session.execute(
            _RESERVE,
            {
                "a": account_key(username),
                "s": source,
                "pair": PAIR_LIMIT,
                "account": ACCOUNT_LIMIT,
                "source": SOURCE_LIMIT,
                "base": BASE_SECONDS,
                "cap": CAP_SECONDS,
                "account_lock": ACCOUNT_LOCK_SECONDS,
                "window": WINDOW_SECONDS,
            },
        )
    ).one()
    return Attempt(bool(row.allowed), int(row.reserved), row.locked)


async def succeeded(session: AsyncSession, username: str, source: str, attempt: Attempt) -> None:
    await session.execute(
        _SUCCEEDED, {"a": account_key(username), "s": source, "reserved": attempt.reserved, "pair": PAIR_LIMIT}
    )


async def unlock(session: AsyncSession, username: str) -> int:
    """Forget every failure counted against ``username`` (all sources); returns the rows cleared."""
    result = await session.execute(text("DELETE FROM login_throttle WHERE account = :a"), {"a": account_key(username)})
    return int(getattr(result, "rowcount", 0) or 0)
