"""Envelope encryption at rest for tenant data (AES-256-GCM).

Why this exists: audit events carry sensitive payloads, and a database dump or a
backup must not expose them. Every tenant owns one or more random *data keys*
(DEKs); sensitive fields are encrypted with the tenant's active DEK, and the DEKs
themselves are stored only *wrapped* by a master key (a local key today, a KMS
later via the :class:`MasterKey` protocol).

Binding rules (all enforced by AES-GCM associated data, so violations fail to
decrypt rather than silently returning someone else's data):

* field ciphertexts are bound to ``tenant id + event id + field name``, so a
  ciphertext copied to another row, another column or another tenant is rejected;
* wrapped DEKs are bound to ``tenant id + key id``, so a wrapped key moved to
  another tenant or relabelled with another key id is rejected.

Field blob layout (version 1)::

    0x01 | key_id (4 bytes, big-endian) | nonce (12 random bytes) | ciphertext + 16-byte tag

The key id inside the blob selects the DEK, so events written before a key
rotation keep decrypting as long as the old DEK stays in the keyring.

Nonces are random (96 bits). NIST SP 800-38D caps a single key at 2**32
random-nonce encryptions; rotate a tenant's DEK well before
:data:`MAX_ENCRYPTIONS_PER_DATA_KEY` fields have been written with it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import secrets
import struct
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "BLOB_VERSION",
    "KEY_SIZE",
    "MAX_ENCRYPTIONS_PER_DATA_KEY",
    "NONCE_SIZE",
    "DataKey",
    "DecryptionError",
    "LocalMasterKey",
    "MasterKey",
    "TenantKeyring",
    "blob_key_id",
    "decrypt_json",
    "encrypt_json",
    "generate_master_key_text",
    "new_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]

KEY_SIZE: Final = 32
"""AES-256 key length in bytes (master keys and data keys)."""
NONCE_SIZE: Final = 12
"""AES-GCM nonce length in bytes."""
TAG_SIZE: Final = 16
BLOB_VERSION: Final = 0x01
"""Version byte of field blobs and of locally wrapped data keys."""
MAX_ENCRYPTIONS_PER_DATA_KEY: Final = 2**32
"""NIST SP 800-38D limit for random 96-bit nonces under one key."""

_MAX_KEY_ID: Final = 0xFFFFFFFF
_FIELD_AAD_PREFIX: Final = b"auditlog/v1"
_DEK_WRAP_CONTEXT_PREFIX: Final = b"auditlog/dek/v1"
_BLOB_HEADER: Final = struct.Struct(">BI")  # version byte, key id (uint32 big-endian)
_BLOB_MIN_SIZE: Final = _BLOB_HEADER.size + NONCE_SIZE + TAG_SIZE
_WRAP_VERSION_BYTE: Final = bytes([BLOB_VERSION])
_WRAPPED_MIN_SIZE: Final = 1 + NONCE_SIZE + TAG_SIZE
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


class DecryptionError(Exception):
    """A blob or wrapped key could not be decrypted.

    Raised for every failure mode (tampering, wrong tenant/event/field/key id,
    unknown key, truncated or unsupported blob). The message never contains key
    material or plaintext.
    """


@runtime_checkable
class MasterKey(Protocol):
    """Something that can wrap and unwrap data keys (local key now, a KMS later).

    ``context`` is authenticated but not encrypted: unwrap must fail unless it is
    given the same context that was used to wrap.
    """

    @property
    def key_id(self) -> str:
        """Stable, non-secret identifier of the master key (stored next to wrapped keys)."""
        ...

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        """Encrypt ``data_key`` bound to ``context``."""
        ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Decrypt a value produced by :meth:`wrap`; raise :class:`DecryptionError` on failure."""
        ...


class LocalMasterKey:
    """A 32-byte master key held in process memory (from settings / environment).

    Wrapped format: ``0x01 | nonce (12) | ciphertext + tag``.
    """

    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"master key must be exactly {KEY_SIZE} bytes, got {len(key)}")
        key = bytes(key)
        self._key_id = hashlib.sha256(key).hexdigest()[:8]
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str) -> LocalMasterKey:
        """Parse a master key from configuration text.

        Accepts 64 hex characters, or standard / urlsafe base64 with or without
        ``=`` padding. Anything that does not decode to exactly 32 bytes is refused
        with a :class:`ValueError` whose message does not echo the value.
        """
        return cls(_decode_master_key_text(value))

    @property
    def key_id(self) -> str:
        """First 8 hex characters of SHA-256(key): tells operators which master wrapped what."""
        return self._key_id

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return _WRAP_VERSION_BYTE + nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        if len(wrapped) < _WRAPPED_MIN_SIZE:
            raise DecryptionError("wrapped key is truncated")
        if wrapped[0] != BLOB_VERSION:
            raise DecryptionError(f"unsupported wrapped key version 0x{wrapped[0]:02x}")
        nonce = wrapped[1 : 1 + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, wrapped[1 + NONCE_SIZE :], context)
        except InvalidTag:
            raise DecryptionError(
                f"wrapped key failed authentication under master key {self._key_id} "
                "(wrong master key, wrong context or tampered data)"
            ) from None

    def __repr__(self) -> str:
        return f"LocalMasterKey(key_id={self._key_id!r})"


def _decode_master_key_text(value: str) -> bytes:
    text = value.strip()
    if not text:
        raise ValueError("master key setting is empty")
    if len(text) == 2 * KEY_SIZE and _HEX_DIGITS.issuperset(text):
        return bytes.fromhex(text)
    normalized = text.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        raw = base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("master key setting is neither base64/base64url nor 64 hex characters") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"master key must decode to exactly {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def generate_master_key_text() -> str:
    """Return a fresh random master key as unpadded urlsafe base64 (for dev bootstrap)."""
    return secrets.token_urlsafe(KEY_SIZE)


@dataclasses.dataclass(frozen=True, slots=True)
class DataKey:
    """One tenant data key (plaintext, in memory only). ``key`` is never shown in repr.

    The AES-GCM cipher object is built once per DataKey and reused for every call.
    """

    key_id: int
    key: bytes = dataclasses.field(repr=False)
    _aead: AESGCM = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.key_id, bool) or not isinstance(self.key_id, int):
            raise TypeError("data key id must be an int")
        if not 0 <= self.key_id <= _MAX_KEY_ID:
            raise ValueError(f"data key id must fit in 4 unsigned bytes, got {self.key_id}")
        if len(self.key) != KEY_SIZE:
            raise ValueError(f"data key must be exactly {KEY_SIZE} bytes, got {len(self.key)}")
        object.__setattr__(self, "key", bytes(self.key))
        object.__setattr__(self, "_aead", AESGCM(self.key))


def new_data_key(key_id: int) -> DataKey:
    """Create a fresh random data key with the given id."""
    return DataKey(key_id=key_id, key=os.urandom(KEY_SIZE))


def _dek_wrap_context(tenant_id: uuid.UUID, key_id: int) -> bytes:
    if not 0 <= key_id <= _MAX_KEY_ID:
        raise ValueError(f"data key id must fit in 4 unsigned bytes, got {key_id}")
    return _DEK_WRAP_CONTEXT_PREFIX + tenant_id.bytes + key_id.to_bytes(4, "big")


def wrap_data_key(master: MasterKey, tenant_id: uuid.UUID, data_key: DataKey) -> bytes:
    """Wrap ``data_key`` with ``master``, bound to the tenant id and the key id."""
    return master.wrap(data_key.key, context=_dek_wrap_context(tenant_id, data_key.key_id))


def unwrap_data_key(master: MasterKey, tenant_id: uuid.UUID, key_id: int, wrapped: bytes) -> DataKey:
    """Inverse of :func:`wrap_data_key`; raises :class:`DecryptionError` if the binding does not match."""
    raw = master.unwrap(wrapped, context=_dek_wrap_context(tenant_id, key_id))
    if len(raw) != KEY_SIZE:
        raise DecryptionError(f"unwrapped data key {key_id} has the wrong length")
    return DataKey(key_id=key_id, key=raw)


class TenantKeyring:
    """All data keys of one tenant, with the one used for new encryptions.

    Immutable: rotation returns a new keyring (:meth:`with_active`), so a keyring
    can be cached and shared between concurrent requests.
    """

    __slots__ = ("_aad_prefix", "_active", "_active_header", "_aead_by_header", "_keys", "_tenant_id")

    def __init__(
        self,
        tenant_id: uuid.UUID,
        active: DataKey,
        keys: Mapping[int, DataKey] | Iterable[DataKey] | None = None,
    ) -> None:
        merged: dict[int, DataKey] = {}
        if isinstance(keys, Mapping):
            for key_id, data_key in keys.items():
                if key_id != data_key.key_id:
                    raise ValueError(f"keyring entry {key_id} holds data key {data_key.key_id}")
                merged[key_id] = data_key
        elif keys is not None:
            for data_key in keys:
                _add_key(merged, data_key)
        _add_key(merged, active)
        self._tenant_id = tenant_id
        self._active = active
        self._keys: Mapping[int, DataKey] = MappingProxyType(merged)
        self._active_header = _BLOB_HEADER.pack(BLOB_VERSION, active.key_id)
        self._aad_prefix = _FIELD_AAD_PREFIX + tenant_id.bytes
        self._aead_by_header = {_BLOB_HEADER.pack(BLOB_VERSION, k): dk._aead for k, dk in merged.items()}

    @property
    def tenant_id(self) -> uuid.UUID:
        return self._tenant_id

    @property
    def active(self) -> DataKey:
        """The data key used by :meth:`encrypt`."""
        return self._active

    @property
    def keys(self) -> Mapping[int, DataKey]:
        """Read-only view of every data key by id (active included)."""
        return self._keys

    def with_active(self, data_key: DataKey) -> TenantKeyring:
        """Return a keyring that encrypts with ``data_key`` and still decrypts with every older key."""
        return TenantKeyring(self._tenant_id, data_key, self._keys)

    def encrypt(self, plaintext: bytes, *, event_id: uuid.UUID, field: str) -> bytes:
        """Encrypt one field of one event with the active data key."""
        nonce = os.urandom(NONCE_SIZE)
        aad = self._aad_prefix + event_id.bytes + field.encode()
        return self._active_header + nonce + self._active._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, *, event_id: uuid.UUID, field: str) -> bytes:
        """Decrypt a blob made by :meth:`encrypt` (with any key still in this keyring)."""
        if len(blob) < _BLOB_MIN_SIZE:
            raise DecryptionError("encrypted blob is truncated")
        version, key_id = _BLOB_HEADER.unpack_from(blob)
        if version != BLOB_VERSION:
            raise DecryptionError(f"unsupported encrypted blob version 0x{version:02x}")
        data_key = self._keys.get(key_id)
        if data_key is None:
            raise DecryptionError(f"data key {key_id} is not in the keyring of tenant {self._tenant_id}")
        start = _BLOB_HEADER.size
        nonce = blob[start : start + NONCE_SIZE]
        aad = self._aad_prefix + event_id.bytes + field.encode()
        try:
            return data_key._aead.decrypt(nonce, blob[start + NONCE_SIZE :], aad)
        except InvalidTag:
            raise DecryptionError(
                f"encrypted field {field!r} failed authentication with data key {key_id} "
                "(wrong tenant, event or field, or tampered data)"
            ) from None

    def opener(self, field: str) -> Callable[[bytes, uuid.UUID], bytes]:
        """``decrypt`` for many blobs of one field (a page of events): the same checks and errors, with the
        header → key look-up and the constant parts of the associated data prepared once."""
        by_header = self._aead_by_header
        prefix, suffix = self._aad_prefix, field.encode()
        head, body = _BLOB_HEADER.size, _BLOB_HEADER.size + NONCE_SIZE

        def open_blob(blob: bytes, event_id: uuid.UUID) -> bytes:
            aead = by_header.get(blob[:head])
            if aead is None or len(blob) < _BLOB_MIN_SIZE:
                return self.decrypt(blob, event_id=event_id, field=field)  # raises the precise error
            try:
                return aead.decrypt(blob[head:body], blob[body:], prefix + event_id.bytes + suffix)
            except InvalidTag:
                raise DecryptionError(
                    f"encrypted field {field!r} failed authentication (wrong tenant, event or field, or tampered data)"
                ) from None

        return open_blob

    def raw_opener(self, field: str) -> Callable[[bytes, bytes], bytes]:
        """:meth:`opener` for callers holding event ids as their 16 raw bytes (the lake export reads a batch's
        ids as one buffer): the same checks and errors."""
        by_header = self._aead_by_header
        prefix, suffix = self._aad_prefix, field.encode()
        head, body = _BLOB_HEADER.size, _BLOB_HEADER.size + NONCE_SIZE

        def open_blob(blob: bytes, event_id: bytes) -> bytes:
            aead = by_header.get(blob[:head])
            if aead is None or len(blob) < _BLOB_MIN_SIZE or len(event_id) != 16:
                return self.decrypt(blob, event_id=uuid.UUID(bytes=event_id), field=field)  # the precise error
            try:
                return aead.decrypt(blob[head:body], blob[body:], prefix + event_id + suffix)
            except InvalidTag:
                raise DecryptionError(
                    f"encrypted field {field!r} failed authentication (wrong tenant, event or field, or tampered data)"
                ) from None

        return open_blob

    def __repr__(self) -> str:
        return f"TenantKeyring(tenant_id={self._tenant_id}, active={self._active.key_id}, keys={sorted(self._keys)})"


def _add_key(keys: dict[int, DataKey], data_key: DataKey) -> None:
    existing = keys.get(data_key.key_id)
    if existing is not None and existing != data_key:
        raise ValueError(f"two different data keys share key id {data_key.key_id}")
    keys[data_key.key_id] = data_key


def blob_key_id(blob: bytes) -> int | None:
    """The id of the data key a field blob names in its header (``None`` if it is no version-1 blob): with it
    a reader tells a blob whose key was destroyed (crypto-shredded) from one that fails authentication."""
    if len(blob) < _BLOB_MIN_SIZE or blob[0] != BLOB_VERSION:
        return None
    return int(_BLOB_HEADER.unpack_from(blob)[1])


def encrypt_json(keyring: TenantKeyring, value: Any, *, event_id: uuid.UUID, field: str) -> bytes:
    """JSON-encode ``value`` with msgspec and encrypt it as one field."""
    return keyring.encrypt(msgspec.json.encode(value), event_id=event_id, field=field)


def decrypt_json(keyring: TenantKeyring, blob: bytes, *, event_id: uuid.UUID, field: str) -> Any:
    """Decrypt a blob made by :func:`encrypt_json` and decode the JSON."""
    plaintext = keyring.decrypt(blob, event_id=event_id, field=field)
    try:
        return msgspec.json.decode(plaintext)
    except msgspec.DecodeError:
        raise DecryptionError(f"decrypted field {field!r} is not valid JSON") from None
