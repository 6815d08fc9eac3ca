"""Idempotency-Key for POST /logs and /logs/bulk: a repeat within 24 h returns the first result.

The key row is claimed in the same transaction as the events it stands for (see ``ingest``), so two
concurrent requests with one key can never both insert: the loser waits for the winner's commit and then
reads the winner's stored response. A repeat with the same key but a different body (or on the other
route) is a ``409``. Keys are per tenant AND caller (the user, or the API key for machine clients), as
Stripe scopes them per account and key: another caller sending the same key and body is another request,
stored and recorded as its own (issue 14, finding 5). Rows older than ``jobs.idempotency.TTL`` are ignored and may be
reclaimed, and ``jobs.idempotency.purge_idempotency_keys`` deletes them.

The stored row holds no event data in clear (issue 13): the first response (the whole event, metadata
included) and the request's fingerprint (a plain SHA-256 of the body would let anyone holding the disk confirm
a guessed body) are AES-GCM encrypted with the tenant's data key (:func:`seal`), bound to the tenant, the
caller and the key, and opened only to replay (:func:`unseal`). Rows written before that (a 32-byte hash and
a JSON response) are still honoured until they expire.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from app.web.errors import ApiError
from app.web.responses import EncodedJSON

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["HEADER", "Claim", "StoredResponse", "parse_key", "replay", "seal", "unseal"]

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")
_HASH_FIELD: Final = "idempotency_hash"
_RESPONSE_FIELD: Final = "idempotency_response"
_PLAIN_HASH_SIZE: Final = 32


@dataclass(slots=True, frozen=True)
class Claim:
    """What a submission will store under its key if it wins: the request fingerprint and 201 body."""

    caller: uuid.UUID
    """The principal's subject: user id, or API key id. Part of the key's scope with the tenant."""
    key: str
    request_hash: bytes
    response: bytes

    @property
    def scope(self) -> tuple[uuid.UUID, str]:
        """What identifies the key within its tenant: (caller, key)."""
        return (self.caller, self.key)


@dataclass(slots=True, frozen=True)
class StoredResponse:
    """The first result stored under a key (always a 201: only successful writes are stored)."""

    request_hash: bytes
    response: bytes


def parse_key(value: str | None) -> str | None:
    """The header's key, or ``None`` when absent; a malformed key is a 400 naming the header."""
    if value is None:
        return None
    key = value.strip()
    if not _KEY_RE.fullmatch(key):
        raise ApiError(
            400,
            f"{HEADER}: must be 1-255 visible ASCII characters",
            errors=[{"field": HEADER, "message": "must be 1-255 visible ASCII characters"}],
        )
    return key


def _binding(caller: uuid.UUID, key: str) -> uuid.UUID:
    """What the ciphertexts of a key row are bound to besides the tenant: its caller and key."""
    return uuid.uuid5(caller, key)


def seal(keyring: TenantKeyring, claim: Claim) -> tuple[bytes, bytes]:
    """The ``(request_hash, response)`` columns stored for ``claim``: both encrypted with the tenant's key."""
    bound = _binding(claim.caller, claim.key)
    return (
        keyring.encrypt(claim.request_hash, event_id=bound, field=_HASH_FIELD),
        keyring.encrypt(claim.response, event_id=bound, field=_RESPONSE_FIELD),
    )


def unseal(keyring: TenantKeyring, caller: uuid.UUID, key: str, request_hash: bytes, response: bytes) -> StoredResponse:
    """A stored row opened for replay (``DecryptionError`` if tampered with or moved to another key)."""
    if len(request_hash) == _PLAIN_HASH_SIZE:  # written before responses were sealed
        return StoredResponse(request_hash, response)
    bound = _binding(caller, key)
    return StoredResponse(
        keyring.decrypt(request_hash, event_id=bound, field=_HASH_FIELD),
        keyring.decrypt(response, event_id=bound, field=_RESPONSE_FIELD),
    )


def replay(claim: Claim, stored: StoredResponse) -> EncodedJSON:
    """The stored first result for a repeat, or a 409 when the key was used for another request."""
    if stored.request_hash != claim.request_hash:
        raise ApiError(
            409,
            f"{HEADER} {claim.key!r} was already used for a different request",
            errors=[{"field": HEADER, "message": "already used for a different request body"}],
        )
    return EncodedJSON(stored.response, status_code=201, headers={"Idempotent-Replayed": "true"})
