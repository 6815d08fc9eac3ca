"""Password hashing for user logins (argon2id via argon2-cffi).

Why this exists: one place that owns the hashing parameters, never raises on a
bad password or a corrupt stored hash, tells callers when a stored hash should
be upgraded, and lets a login for an unknown user spend the same time as a
wrong password (:func:`verify_dummy`), so response times do not reveal which
accounts exist.

Default cost: argon2id, t=3, m=19 MiB, p=1 (OWASP's 19 MiB/t=2 baseline plus
one pass), about 30-35 ms per hash or verify on a 2-core machine. The work is
CPU-bound and argon2-cffi releases the GIL, so async handlers should run these
functions in a worker thread (e.g. ``anyio.to_thread.run_sync``) rather than on
the event loop.

Every function takes an optional ``hasher`` (see :func:`make_hasher`) so tests
can use cheap parameters.
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import Argon2Error

if TYPE_CHECKING:
    DUMMY_HASH: str  # provided lazily by the module-level __getattr__ below

__all__ = [
    "DEFAULT_MEMORY_COST_KIB",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "DUMMY_HASH",
    "default_hasher",
    "dummy_hash",
    "hash_password",
    "make_hasher",
    "needs_rehash",
    "verify_dummy",
    "verify_password",
]

DEFAULT_TIME_COST: Final = 3
DEFAULT_MEMORY_COST_KIB: Final = 19 * 1024
DEFAULT_PARALLELISM: Final = 1

_HASH_LEN: Final = 32
_SALT_LEN: Final = 16


def make_hasher(
    time_cost: int = DEFAULT_TIME_COST,
    memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
    parallelism: int = DEFAULT_PARALLELISM,
) -> PasswordHasher:
    """Build an argon2id :class:`PasswordHasher` with the given cost parameters."""
    return PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_cost_kib,
        parallelism=parallelism,
        hash_len=_HASH_LEN,
        salt_len=_SALT_LEN,
        type=Type.ID,
    )


_DEFAULT_HASHER: Final = make_hasher()


def default_hasher() -> PasswordHasher:
    """The process-wide hasher with the default parameters."""
    return _DEFAULT_HASHER


def hash_password(pw: str, *, hasher: PasswordHasher | None = None) -> str:
    """Hash ``pw`` with argon2id; the result embeds salt and parameters."""
    return (hasher or _DEFAULT_HASHER).hash(pw)


def verify_password(hash: str, pw: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True if ``pw`` matches ``hash``; False on mismatch *or* a malformed/unsupported hash. Never raises."""
    try:
        return (hasher or _DEFAULT_HASHER).verify(hash, pw)
    except (Argon2Error, ValueError, TypeError):  # mismatch, malformed hash, unencodable input
        return False


def needs_rehash(hash: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True if ``hash`` was made with other parameters than ``hasher`` (or is unparseable).

    Call after a successful :func:`verify_password` and store a fresh
    :func:`hash_password` result when this returns True.
    """
    try:
        return (hasher or _DEFAULT_HASHER).check_needs_rehash(hash)
    except (Argon2Error, ValueError, TypeError):
        return True


_dummy_hashes: dict[tuple[object, ...], str] = {}
_dummy_lock = threading.Lock()


def _hasher_params(hasher: PasswordHasher) -> tuple[object, ...]:
    return (
        hasher.type,
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
    )


def dummy_hash(hasher: PasswordHasher | None = None) -> str:
    """Hash of a random, discarded string made with ``hasher``'s parameters.

    Computed once per parameter set, then cached for the life of the process.
    """
    hasher = hasher or _DEFAULT_HASHER
    params = _hasher_params(hasher)
    cached = _dummy_hashes.get(params)
    if cached is not None:
        return cached
    with _dummy_lock:
        cached = _dummy_hashes.get(params)
        if cached is None:
            cached = hasher.hash(secrets.token_urlsafe(32))
            _dummy_hashes[params] = cached
        return cached


def verify_dummy(pw: str, *, hasher: PasswordHasher | None = None) -> bool:
    """Spend the time of a real verification, then return False.

    Use on the unknown-user path of a login so it takes as long as a wrong password.
    """
    verify_password(dummy_hash(hasher), pw, hasher=hasher)
    return False


if not TYPE_CHECKING:  # hidden from type checkers so they still flag misspelled attributes

    def __getattr__(name: str) -> str:
        # DUMMY_HASH is computed on first access (hashing at import time would slow every startup).
        if name == "DUMMY_HASH":
            return dummy_hash()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
