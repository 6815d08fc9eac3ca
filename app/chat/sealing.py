"""A conversation message's text sealed at rest (issue 13): a question, an answer and the SQL that ran can
quote event values (user ids, metadata values, messages), which the service never keeps in clear.

``content`` and ``sql`` are one AES-GCM blob under the tenant's data key (``TenantKeyring.encrypt``, the
mechanism of the events and the Idempotency-Key rows), bound to the tenant, the message id, its conversation
and its role: a blob copied to another row, conversation, role or tenant fails to open. A blob whose data key
is no longer in the keyring (destroyed: crypto-shredding) opens as ``None``, the message's text being gone
like its tenant's events; a blob that fails authentication raises ``DecryptionError``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

import msgspec

from db.crypto import DecryptionError, blob_key_id

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["Sealed", "open_message", "seal_message"]

_FIELD: Final = "chat_message"


class Sealed(msgspec.Struct, array_like=True, frozen=True):
    """What the blob holds."""

    content: str
    sql: str | None


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Sealed)


def _field(conversation_id: uuid.UUID, role: str) -> str:
    return f"{_FIELD}/{conversation_id}/{role}"


def seal_message(keyring: TenantKeyring, conversation_id: uuid.UUID, message_id: uuid.UUID, role: str,
                 content: str, sql: str | None) -> bytes:  # fmt: skip
    """The ``sealed`` column of one message, encrypted with the tenant's active data key."""
    plain = _encoder.encode(Sealed(content, sql))
    return keyring.encrypt(plain, event_id=message_id, field=_field(conversation_id, role))


def open_message(keyring: TenantKeyring | None, conversation_id: uuid.UUID, message_id: uuid.UUID, role: str,
                 blob: bytes) -> Sealed | None:  # fmt: skip
    """The message's text, or ``None`` when its data key was destroyed (``keyring`` is ``None`` when the
    tenant has no key left); ``DecryptionError`` when the blob was tampered with or moved."""
    key_id = blob_key_id(blob)
    if keyring is None or (key_id is not None and key_id not in keyring.keys):
        return None
    plain = keyring.decrypt(blob, event_id=message_id, field=_field(conversation_id, role))
    try:
        return _decoder.decode(plain)
    except msgspec.DecodeError:
        raise DecryptionError("a sealed conversation message is not what was sealed") from None
