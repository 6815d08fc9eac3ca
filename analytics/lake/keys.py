"""Parquet modular encryption of the lake's sensitive columns, with keys that only the tenant's keyring opens.

pyarrow's key tool wraps each file's random column/footer keys with a *master key* named by an identifier
(double wrapping: through a cached key-encryption key). Our KMS is the tenant's keyring: the master key
``tenant-<uuid>-k<key id>`` is HKDF-SHA256 of that tenant data key (``db.crypto``), which is itself stored
only wrapped by ``AUDIT_MASTER_KEY``. Wrapping is AES-256-GCM bound to the identifier. So a lake file's
sensitive columns open only with that tenant's data key: destroy the tenant's keys and they are noise, while
the other columns (plaintext footer) stay readable by any Parquet reader with no key at all.

An external engine reads the sensitive columns the same way: pyarrow with ``lake_decryption_properties``
(or any Parquet-encryption reader with a KMS client doing this HKDF + AES-GCM unwrap), given the tenant's
unwrapped data keys.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import TYPE_CHECKING, Final

import pyarrow.parquet.encryption as pe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from analytics.lake.schema import SENSITIVE_COLUMNS

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["LakeKeyError", "TenantLakeKms", "lake_decryption_properties", "lake_encryption_properties"]

_INFO: Final = b"auditlog/lake/v1"
_NONCE: Final = 12


class LakeKeyError(Exception):
    """A lake key could not be unwrapped: wrong tenant, a key no longer in the keyring, or tampering."""


def master_key_id(tenant_id: uuid.UUID, key_id: int) -> str:
    return f"tenant-{tenant_id}-k{key_id}"


class TenantLakeKms(pe.KmsClient):
    """A pyarrow ``KmsClient`` whose master keys are derived from one tenant's data keys."""

    def __init__(self, keyring: TenantKeyring) -> None:
        super().__init__()
        self._keyring = keyring
        self._aeads: dict[str, AESGCM] = {}

    def _aead(self, identifier: str) -> AESGCM:
        aead = self._aeads.get(identifier)
        if aead is not None:
            return aead
        prefix = f"tenant-{self._keyring.tenant_id}-k"
        if not identifier.startswith(prefix) or not identifier[len(prefix) :].isdigit():
            raise LakeKeyError(f"lake master key {identifier!r} does not belong to tenant {self._keyring.tenant_id}")
        data_key = self._keyring.keys.get(int(identifier[len(prefix) :]))
        if data_key is None:
            raise LakeKeyError(f"lake master key {identifier!r}: the data key is no longer in the tenant's keyring")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + self._keyring.tenant_id.bytes
        ).derive(data_key.key)
        aead = self._aeads[identifier] = AESGCM(derived)
        return aead

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead(master_key_identifier).encrypt(nonce, key_bytes, master_key_identifier.encode())
        return base64.b64encode(nonce + sealed).decode()

    def unwrap_key(self, wrapped_key: str | bytes, master_key_identifier: str) -> bytes:
        raw = base64.b64decode(wrapped_key)
        try:
            return self._aead(master_key_identifier).decrypt(raw[:_NONCE], raw[_NONCE:], master_key_identifier.encode())
        except InvalidTag:
            raise LakeKeyError(f"lake key under {master_key_identifier!r} failed authentication") from None


def _factory(keyring: TenantKeyring) -> pe.CryptoFactory:
    return pe.CryptoFactory(lambda _config: TenantLakeKms(keyring))


def _connection(keyring: TenantKeyring) -> pe.KmsConnectionConfig:
    return pe.KmsConnectionConfig(kms_instance_id=f"auditlog-tenant-{keyring.tenant_id}")


def lake_encryption_properties(keyring: TenantKeyring) -> pe.FileEncryptionProperties:
    """Encrypt ``SENSITIVE_COLUMNS`` under the tenant's active data key; plaintext footer (signed)."""
    master = master_key_id(keyring.tenant_id, keyring.active.key_id)
    config = pe.EncryptionConfiguration(
        footer_key=master,
        column_keys={master: list(SENSITIVE_COLUMNS)},
        plaintext_footer=True,
        encryption_algorithm="AES_GCM_V1",
        data_key_length_bits=256,
    )
    return _factory(keyring).file_encryption_properties(_connection(keyring), config)


def lake_decryption_properties(keyring: TenantKeyring) -> pe.FileDecryptionProperties:
    return _factory(keyring).file_decryption_properties(_connection(keyring), pe.DecryptionConfiguration())
