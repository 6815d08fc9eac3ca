"""Unit tests for db.crypto: envelope encryption, bindings, rotation and key parsing."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import pytest

from db.crypto import (
    BLOB_VERSION,
    NONCE_SIZE,
    DataKey,
    DecryptionError,
    LocalMasterKey,
    MasterKey,
    TenantKeyring,
    decrypt_json,
    encrypt_json,
    generate_master_key_text,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)

TAG_SIZE = 16
HEADER_SIZE = 5


@pytest.fixture
def tenant_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def event_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def keyring(tenant_id: uuid.UUID) -> TenantKeyring:
    return TenantKeyring(tenant_id, new_data_key(1))


# --- field encryption -------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello audit log", os.urandom(4096)])
def test_round_trip(keyring: TenantKeyring, event_id: uuid.UUID, plaintext: bytes) -> None:
    blob = keyring.encrypt(plaintext, event_id=event_id, field="payload")
    if len(plaintext) >= 8:  # a shorter byte string turns up in random ciphertext by chance
        assert plaintext not in blob
    assert keyring.decrypt(blob, event_id=event_id, field="payload") == plaintext


def test_blob_layout(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    plaintext = b"0123456789"
    blob = TenantKeyring(keyring.tenant_id, new_data_key(0x01020304)).encrypt(
        plaintext, event_id=event_id, field="payload"
    )
    assert blob[0] == BLOB_VERSION == 0x01
    assert blob[1:5] == bytes([1, 2, 3, 4])  # key id, big-endian
    assert len(blob) == HEADER_SIZE + NONCE_SIZE + len(plaintext) + TAG_SIZE


def test_same_plaintext_encrypts_differently(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    a = keyring.encrypt(b"same", event_id=event_id, field="payload")
    b = keyring.encrypt(b"same", event_id=event_id, field="payload")
    assert a[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE] != b[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    assert a != b


def test_wrong_event_id_fails(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"secret", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError):
        keyring.decrypt(blob, event_id=uuid.uuid4(), field="payload")


def test_wrong_field_fails(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"secret", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError):
        keyring.decrypt(blob, event_id=event_id, field="metadata")


def test_wrong_tenant_fails_even_with_the_same_key(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    # Same data key material under another tenant id: only the AAD differs, and that must be enough.
    other = TenantKeyring(uuid.uuid4(), keyring.active)
    blob = keyring.encrypt(b"secret", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError):
        other.decrypt(blob, event_id=event_id, field="payload")


def test_every_flipped_bit_fails(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"tamper me", event_id=event_id, field="payload")
    for index in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[index] ^= 1 << bit
            with pytest.raises(DecryptionError):
                keyring.decrypt(bytes(tampered), event_id=event_id, field="payload")


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE, HEADER_SIZE + NONCE_SIZE, HEADER_SIZE + NONCE_SIZE + 15])
def test_truncated_blob_fails(keyring: TenantKeyring, event_id: uuid.UUID, cut: int) -> None:
    blob = keyring.encrypt(b"", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError, match="truncated"):
        keyring.decrypt(blob[:cut], event_id=event_id, field="payload")


def test_unknown_version_fails(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"x", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError, match="version"):
        keyring.decrypt(b"\x02" + blob[1:], event_id=event_id, field="payload")


def test_error_messages_do_not_leak_key_material(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"plaintext-marker", event_id=event_id, field="payload")
    key = keyring.active.key
    with pytest.raises(DecryptionError) as excinfo:
        keyring.decrypt(blob, event_id=uuid.uuid4(), field="payload")
    text = str(excinfo.value) + repr(excinfo.value)
    assert key.hex() not in text
    assert repr(key) not in text
    assert base64.b64encode(key).decode() not in text
    assert "plaintext-marker" not in text
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


def test_reprs_hide_keys(keyring: TenantKeyring) -> None:
    key = keyring.active.key
    for obj in (keyring, keyring.active):
        assert key.hex() not in repr(obj)
        assert repr(key) not in repr(obj)
    raw = os.urandom(32)
    assert raw.hex() not in repr(LocalMasterKey(raw))
    assert repr(raw) not in repr(LocalMasterKey(raw))


# --- rotation ---------------------------------------------------------------------------------------


def test_rotation_keeps_old_blobs_readable(tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
    key1, key2 = new_data_key(1), new_data_key(2)
    ring1 = TenantKeyring(tenant_id, key1)
    old_blob = ring1.encrypt(b"before rotation", event_id=event_id, field="payload")

    ring2 = ring1.with_active(key2)
    new_blob = ring2.encrypt(b"after rotation", event_id=event_id, field="payload")

    assert ring2.active is key2
    assert set(ring2.keys) == {1, 2}
    assert ring1.active is key1 and set(ring1.keys) == {1}  # original keyring is unchanged
    assert int.from_bytes(old_blob[1:5], "big") == 1
    assert int.from_bytes(new_blob[1:5], "big") == 2
    assert ring2.decrypt(old_blob, event_id=event_id, field="payload") == b"before rotation"
    assert ring2.decrypt(new_blob, event_id=event_id, field="payload") == b"after rotation"


def test_opener_reads_what_decrypt_reads_and_refuses_what_it_refuses(tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
    key1, key2 = new_data_key(1), new_data_key(2)
    ring = TenantKeyring(tenant_id, key1).with_active(key2)
    old = TenantKeyring(tenant_id, key1).encrypt(b"old key", event_id=event_id, field="payload")
    new = ring.encrypt(b"new key", event_id=event_id, field="payload")
    open_payload = ring.opener("payload")
    assert open_payload(old, event_id) == b"old key" and open_payload(new, event_id) == b"new key"
    other_event, other_tenant = uuid.uuid4(), TenantKeyring(uuid.uuid4(), key2)
    refused = [
        (open_payload, new, other_event),  # moved to another row
        (other_tenant.opener("payload"), new, event_id),  # moved to another tenant, same key material
        (ring.opener("metadata"), new, event_id),  # another field
        (open_payload, new[:-1] + bytes([new[-1] ^ 1]), event_id),  # tampered
        (open_payload, new[:20], event_id),  # truncated
        (open_payload, b"\x02" + new[1:], event_id),  # unknown version
        (TenantKeyring(tenant_id, new_data_key(3)).opener("payload"), new, event_id),  # key not in the ring
    ]
    for opener, blob, eid in refused:
        with pytest.raises(DecryptionError):
            opener(blob, eid)


def test_keyring_without_old_key_fails_cleanly(tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
    old_blob = TenantKeyring(tenant_id, new_data_key(1)).encrypt(b"x", event_id=event_id, field="payload")
    only_key2 = TenantKeyring(tenant_id, new_data_key(2))
    with pytest.raises(DecryptionError, match="data key 1 is not in the keyring"):
        only_key2.decrypt(old_blob, event_id=event_id, field="payload")


def test_keyring_built_from_mapping_and_iterable(tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
    key1, key2, key3 = new_data_key(1), new_data_key(2), new_data_key(3)
    blob = TenantKeyring(tenant_id, key1).encrypt(b"x", event_id=event_id, field="f")
    from_mapping = TenantKeyring(tenant_id, key3, {1: key1, 2: key2})
    from_list = TenantKeyring(tenant_id, key3, [key1, key2])
    assert set(from_mapping.keys) == set(from_list.keys) == {1, 2, 3}
    assert from_mapping.decrypt(blob, event_id=event_id, field="f") == b"x"
    assert from_list.decrypt(blob, event_id=event_id, field="f") == b"x"


def test_keyring_rejects_inconsistent_keys(tenant_id: uuid.UUID) -> None:
    key1 = new_data_key(1)
    with pytest.raises(ValueError, match="holds data key"):
        TenantKeyring(tenant_id, key1, {2: new_data_key(3)})
    with pytest.raises(ValueError, match="share key id 1"):
        TenantKeyring(tenant_id, key1, [new_data_key(1)])
    # The same key passed twice is fine.
    assert set(TenantKeyring(tenant_id, key1, [key1]).keys) == {1}


def test_data_key_validation() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(key_id=1, key=os.urandom(31))
    with pytest.raises(ValueError, match="4 unsigned bytes"):
        DataKey(key_id=-1, key=os.urandom(32))
    with pytest.raises(ValueError, match="4 unsigned bytes"):
        DataKey(key_id=2**32, key=os.urandom(32))
    key = new_data_key(7)
    assert key.key_id == 7 and len(key.key) == 32
    assert new_data_key(7).key != key.key


# --- JSON helpers -----------------------------------------------------------------------------------


def test_json_round_trip(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    value = {"actor": "alice", "ip": "10.0.0.1", "changes": [{"field": "role", "to": "admin"}], "n": 3}
    blob = encrypt_json(keyring, value, event_id=event_id, field="payload")
    assert b"alice" not in blob
    assert decrypt_json(keyring, blob, event_id=event_id, field="payload") == value
    with pytest.raises(DecryptionError):
        decrypt_json(keyring, blob, event_id=event_id, field="other")


def test_decrypt_json_rejects_non_json_plaintext(keyring: TenantKeyring, event_id: uuid.UUID) -> None:
    blob = keyring.encrypt(b"\xff not json", event_id=event_id, field="payload")
    with pytest.raises(DecryptionError, match="not valid JSON"):
        decrypt_json(keyring, blob, event_id=event_id, field="payload")


# --- data key wrapping ------------------------------------------------------------------------------


@pytest.fixture
def master() -> LocalMasterKey:
    return LocalMasterKey(os.urandom(32))


def test_local_master_key_satisfies_protocol(master: LocalMasterKey) -> None:
    assert isinstance(master, MasterKey)


def test_master_key_id_is_sha256_prefix() -> None:
    raw = os.urandom(32)
    assert LocalMasterKey(raw).key_id == hashlib.sha256(raw).hexdigest()[:8]


def test_master_wrap_format_and_context(master: LocalMasterKey) -> None:
    secret = os.urandom(32)
    wrapped = master.wrap(secret, context=b"ctx-a")
    assert wrapped[0] == 0x01
    assert len(wrapped) == 1 + NONCE_SIZE + 32 + TAG_SIZE
    assert secret not in wrapped
    assert master.unwrap(wrapped, context=b"ctx-a") == secret
    with pytest.raises(DecryptionError):
        master.unwrap(wrapped, context=b"ctx-b")
    with pytest.raises(DecryptionError):
        master.unwrap(wrapped[:20], context=b"ctx-a")


def test_wrap_unwrap_data_key_round_trip(master: LocalMasterKey, tenant_id: uuid.UUID) -> None:
    key = new_data_key(5)
    wrapped = wrap_data_key(master, tenant_id, key)
    assert key.key not in wrapped
    unwrapped = unwrap_data_key(master, tenant_id, 5, wrapped)
    assert unwrapped == key
    assert unwrapped.key == key.key


def test_wrapped_key_moved_to_other_tenant_fails(master: LocalMasterKey, tenant_id: uuid.UUID) -> None:
    wrapped = wrap_data_key(master, tenant_id, new_data_key(1))
    with pytest.raises(DecryptionError):
        unwrap_data_key(master, uuid.uuid4(), 1, wrapped)


def test_wrapped_key_relabelled_with_other_key_id_fails(master: LocalMasterKey, tenant_id: uuid.UUID) -> None:
    wrapped = wrap_data_key(master, tenant_id, new_data_key(1))
    with pytest.raises(DecryptionError):
        unwrap_data_key(master, tenant_id, 2, wrapped)


def test_wrapped_key_under_other_master_fails(master: LocalMasterKey, tenant_id: uuid.UUID) -> None:
    wrapped = wrap_data_key(master, tenant_id, new_data_key(1))
    other = LocalMasterKey(os.urandom(32))
    with pytest.raises(DecryptionError, match=other.key_id):
        unwrap_data_key(other, tenant_id, 1, wrapped)


def test_tampered_wrapped_key_fails(master: LocalMasterKey, tenant_id: uuid.UUID) -> None:
    wrapped = bytearray(wrap_data_key(master, tenant_id, new_data_key(1)))
    wrapped[-1] ^= 0x01
    with pytest.raises(DecryptionError):
        unwrap_data_key(master, tenant_id, 1, bytes(wrapped))


def test_full_envelope_flow(tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
    """Wrap and store a data key, then rebuild everything from settings text as a new process would."""
    setting = generate_master_key_text()
    master = LocalMasterKey.from_setting(setting)
    key1 = new_data_key(1)
    stored = {1: wrap_data_key(master, tenant_id, key1)}
    blob = encrypt_json(TenantKeyring(tenant_id, key1), {"a": 1}, event_id=event_id, field="payload")

    reloaded_master = LocalMasterKey.from_setting(setting)
    assert reloaded_master.key_id == master.key_id
    keys = [unwrap_data_key(reloaded_master, tenant_id, kid, wrapped) for kid, wrapped in stored.items()]
    ring = TenantKeyring(tenant_id, keys[0], keys)
    assert decrypt_json(ring, blob, event_id=event_id, field="payload") == {"a": 1}


# --- master key parsing -----------------------------------------------------------------------------


def _text_forms(raw: bytes) -> dict[str, str]:
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "padded-with-whitespace": f"  {raw.hex()}\n",
    }


def test_from_setting_accepts_all_forms() -> None:
    # Bytes chosen so base64 output contains both '+' and '/' (i.e. '-' and '_' in base64url).
    raw = bytes([0xFB, 0xFF, 0xBF] * 10 + [0x01, 0x02])
    forms = _text_forms(raw)
    assert "+" in forms["base64"] and "/" in forms["base64"]
    assert "-" in forms["base64url"] and "_" in forms["base64url"]
    expected = hashlib.sha256(raw).hexdigest()[:8]
    for name, text in forms.items():
        assert LocalMasterKey.from_setting(text).key_id == expected, name


def test_from_setting_keys_actually_work() -> None:
    raw = os.urandom(32)
    a = LocalMasterKey.from_setting(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    b = LocalMasterKey.from_setting(raw.hex())
    assert b.unwrap(a.wrap(b"k" * 32, context=b"c"), context=b"c") == b"k" * 32


@pytest.mark.parametrize("size", [0, 16, 31, 33, 48, 64])
def test_from_setting_rejects_wrong_sizes(size: int) -> None:
    raw = os.urandom(size)
    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        with pytest.raises(ValueError, match=r"32 bytes|empty"):
            LocalMasterKey.from_setting(text)
    if size:
        with pytest.raises(ValueError):
            LocalMasterKey.from_setting(raw.hex())


@pytest.mark.parametrize("text", ["not a key!", "@@@@", "a", "zz" * 32 + "!", "   "])
def test_from_setting_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        LocalMasterKey.from_setting(text)
    if len(text.strip()) > 3:  # the message must not echo the (possibly secret) setting
        assert text.strip() not in str(excinfo.value)


def test_constructor_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        LocalMasterKey(os.urandom(31))
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        LocalMasterKey(os.urandom(33))


def test_generate_master_key_text_round_trips() -> None:
    text = generate_master_key_text()
    assert len(text) == 43 and "=" not in text
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(text + "=")
    assert LocalMasterKey.from_setting(text).key_id == hashlib.sha256(raw).hexdigest()[:8]
    assert generate_master_key_text() != text
