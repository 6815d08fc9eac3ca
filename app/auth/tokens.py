"""Opaque secrets for refresh tokens and API keys, and how they are stored.

Why this exists: these secrets are long random strings, so the database keeps
only their SHA-256 digest (a leaked table cannot be replayed) and lookups never
need a slow password hash. API keys carry a short public id so the row can be
found by index without scanning, then the digest is compared in constant time.

API key shape: ``<prefix>_<public id: 8 chars [A-Za-z0-9]>_<secret: 43 chars urlsafe base64>``,
e.g. ``alk_Ab3dE6gH_<43 chars>``. Public ids are random (~47.6 bits); keep a unique
index on them and retry :func:`new_api_key` on the (rare) collision.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from typing import Final

__all__ = [
    "API_KEY_PREFIX",
    "PUBLIC_ID_LENGTH",
    "SECRET_BYTES",
    "SECRET_LENGTH",
    "constant_time_equal",
    "hash_secret",
    "new_api_key",
    "new_refresh_token",
    "parse_api_key",
]

API_KEY_PREFIX: Final = "alk"
PUBLIC_ID_LENGTH: Final = 8
SECRET_BYTES: Final = 32
SECRET_LENGTH: Final = 43
"""Length of ``secrets.token_urlsafe(32)`` (32 random bytes, unpadded base64url)."""

_PUBLIC_ID_ALPHABET: Final = string.ascii_letters + string.digits
_PREFIX_RE: Final = re.compile(r"[a-z][a-z0-9]{0,15}")
_KEY_BODY_RE: Final = re.compile(rf"_([A-Za-z0-9]{{{PUBLIC_ID_LENGTH}}})_[A-Za-z0-9_-]{{{SECRET_LENGTH}}}")


def hash_secret(value: str) -> bytes:
    """SHA-256 digest of a high-entropy secret (the only form that is stored)."""
    return hashlib.sha256(value.encode()).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two digests without leaking where they differ."""
    return hmac.compare_digest(a, b)


def new_refresh_token() -> tuple[str, bytes]:
    """Return ``(token for the client, sha256 digest to store)``."""
    token = secrets.token_urlsafe(SECRET_BYTES)
    return token, hash_secret(token)


def _check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError("API key prefix must be 1-16 chars of [a-z0-9], starting with a letter")


def new_api_key(prefix: str = API_KEY_PREFIX) -> tuple[str, str, bytes]:
    """Return ``(full key shown once to the user, public id for the row lookup, sha256 digest to store)``.

    The digest covers the full key string (prefix and public id included).
    """
    _check_prefix(prefix)
    public_id = "".join(secrets.choice(_PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
    full = f"{prefix}_{public_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return full, public_id, hash_secret(full)


def parse_api_key(value: str, *, prefix: str = API_KEY_PREFIX) -> tuple[str, str] | None:
    """Return ``(public id, full key)`` if ``value`` has the API key shape, else None.

    Purely syntactic (no lookup); surrounding whitespace is not tolerated.
    """
    if not isinstance(value, str) or len(value) != len(prefix) + 2 + PUBLIC_ID_LENGTH + SECRET_LENGTH:
        return None
    if not value.startswith(prefix):
        return None
    match = _KEY_BODY_RE.fullmatch(value, len(prefix))
    if match is None:
        return None
    return match.group(1), value
