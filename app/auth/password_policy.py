"""What a password must be before it is stored: long enough and not one of the commonest passwords.

The rule follows NIST SP 800-63B: a length floor and a blocklist rather than composition rules. The floor is
12 characters (above NIST's 8, because these accounts read a whole tenant's audit trail and there is no
second factor); the blocklist is the 30,000 commonest passwords shipped inside the ``zxcvbn`` package
(``FREQUENCY_LISTS["passwords"]``), compared case-insensitively, also after stripping the digits and
symbols people pad a common word with (``Password2024!`` is ``password``), loaded once on first use; fewer
than 3 distinct characters is refused too. Every place a
password is set (user creation, an Admin's reset, a user's own change) calls :func:`check_password`, so a
weak password is a ``422`` naming the field, never stored.
"""

from __future__ import annotations

import functools
from typing import Final

from app.web.errors import ApiError

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "WeakPassword", "check_password", "password_problem"]

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 1024
_PADDING: Final = "0123456789!@#$%^&*()-_=+.,;:?~ "


class WeakPassword(ApiError):
    """A 422 naming the field whose password the policy refused."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(422, f"validation failed: {field}: {message}", errors=[{"field": field, "message": message}])


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be used, or None when it may."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    lowered = password.lower()
    core = lowered.strip(_PADDING)
    common = _common_passwords()
    if lowered in common or (len(core) >= 4 and core in common) or len(set(password)) < 3:
        return "is too common or too easy to guess; choose another"
    return None


def check_password(password: str, *, field: str = "password") -> None:
    """Raise :class:`WeakPassword` (422) when the policy refuses ``password``."""
    problem = password_problem(password)
    if problem is not None:
        raise WeakPassword(field, problem)
