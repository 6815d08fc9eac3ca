"""``app.verifiable.note``: C2SP signed-note checkpoints signed with Ed25519, and the leaf encoding."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.verifiable.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    format_checkpoint,
    generate_signer_key,
    open_checkpoint,
)
from db.leaf import LeafFields, encode_leaf, flat_leaf_hasher, leaf_hash, micros, packed_ip

ROOT = bytes(range(32))


def test_checkpoint_round_trip_and_key_texts() -> None:
    signer = NoteSigner.parse(generate_signer_key("auditlog.example"))
    assert NoteSigner.parse(signer.text()).verifier == signer.verifier
    verifier = NoteVerifier.parse(signer.verifier.text())
    assert verifier.text().startswith("auditlog.example+") and len(verifier.key_hash) == 4
    note = signer.sign(format_checkpoint(Checkpoint("auditlog.example/t1", 42, ROOT)))
    body, _, sig = note.partition("\n\n")
    assert body == f"auditlog.example/t1\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith("\u2014 auditlog.example ") and sig.endswith("\n")
    assert open_checkpoint(note, [verifier], origin="auditlog.example/t1") == Checkpoint(
        "auditlog.example/t1", 42, ROOT
    )


def test_other_key_other_tenant_and_tampering_are_refused() -> None:
    signer = NoteSigner.parse(generate_signer_key("auditlog.example"))
    other = NoteSigner.parse(generate_signer_key("auditlog.example"))
    note = signer.sign(format_checkpoint(Checkpoint("auditlog.example/t1", 42, ROOT)))
    with pytest.raises(NoteError, match="no signature"):
        open_checkpoint(note, [other.verifier])
    with pytest.raises(NoteError, match=r"not 'auditlog\.example/t2'"):
        open_checkpoint(note, [signer.verifier], origin="auditlog.example/t2")
    with pytest.raises(NoteError, match="no signature"):
        open_checkpoint(note.replace("\n42\n", "\n43\n"), [signer.verifier])
    # a rotated set of verifiers still opens the old checkpoint
    assert open_checkpoint(note, [other.verifier, signer.verifier]).tree_size == 42


def _fields(**changes: object) -> LeafFields:
    base = {
        "tenant_id": uuid.UUID(int=1), "seq": 1, "id": uuid.UUID(int=2),
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "received_at": datetime(2026, 1, 2, tzinfo=UTC),
        "action": "CREATE", "resource_type": "doc", "resource_id": None, "user_id": "u", "session_id": None,
        "request_id": None, "severity": "INFO", "ip_address": "10.0.0.1", "user_agent": None, "message": None,
        "payload": b"\x01cipher",
    }  # fmt: skip
    base.update(changes)
    return LeafFields(**base)  # type: ignore[arg-type]


def test_leaf_encoding_is_exact_and_every_field_counts() -> None:
    assert micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    same_instant = datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    assert encode_leaf(_fields(timestamp=same_instant)) == encode_leaf(_fields())
    encoded = encode_leaf(_fields())
    assert encoded.startswith(b"auditlog-leaf-v1\x01\x00\x00\x00\x24" + str(uuid.UUID(int=1)).encode())
    assert b"\x01\x00\x00\x00\x04\x0a\x00\x00\x01" in encoded  # the packed IPv4 address
    changes = {
        "seq": 2, "id": uuid.UUID(int=3), "action": "DELETE", "resource_id": "", "user_id": None, "severity": "ERROR",
        "ip_address": "10.0.0.2", "payload": b"\x01cipheR", "message": "m", "tenant_id": uuid.UUID(int=9),
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
    }  # fmt: skip
    for name, value in changes.items():
        assert leaf_hash(_fields(**{name: value})) != leaf_hash(_fields()), name


def test_the_flat_fast_path_hashes_exactly_like_the_reference_encoding() -> None:
    """``flat_leaf_hasher`` (integrator, lake export, lake verifier) == ``leaf_hash`` (the readable reference),
    over nulls, IPv4 and IPv6, non-ASCII text, times before 1970 and values longer than its length table."""
    rng = random.Random(7)
    variants = [
        {},
        {
            "resource_id": "r-é",
            "user_id": None,
            "session_id": "s",
            "request_id": "q",
            "user_agent": "ua ✓",
            "message": "",
        },
        {"ip_address": "2001:db8::7", "payload": None},
        {"ip_address": None, "payload": bytes(rng.randrange(256) for _ in range(5000)), "message": "m" * 4097},
        {"timestamp": datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "seq": 10**12},
        {"ip_address": "::ffff:10.0.0.1", "action": "x" * 4095, "resource_type": "y" * 4096},
    ]
    for changes in variants:
        f = _fields(**changes)
        flat = (
            f.seq, str(f.id), micros(f.timestamp), micros(f.received_at), f.action, f.resource_type, f.resource_id,
            f.user_id, f.session_id, f.request_id, f.severity, None if f.ip_address is None else packed_ip(f.ip_address),
            f.user_agent, f.message, f.payload,
        )  # fmt: skip
        assert flat_leaf_hasher(f.tenant_id)(flat) == leaf_hash(f), changes


def test_settings_keys_newest_first_and_no_key_disables_integration(tmp_path: Path) -> None:
    from app.settings import Environment, Settings
    from app.verifiable.integrator import VerifiableLogPlugin, verifiable_log_plugin
    from app.verifiable.keys import checkpoint_keys

    new, old = generate_signer_key("auditlog.example"), generate_signer_key("auditlog.example")
    settings = Settings(env=Environment.test, data_dir=tmp_path, checkpoint_signing_keys=f"{new},{old}")
    keys = checkpoint_keys(settings)
    assert keys.signer.text() == new
    assert keys.published().splitlines() == [NoteSigner.parse(k).verifier.text() for k in (new, old)]
    assert keys.origin(uuid.UUID(int=5)) == f"auditlog.example/{uuid.UUID(int=5)}"
    assert isinstance(verifiable_log_plugin(settings), VerifiableLogPlugin)
    production = {"env": Environment.production, "data_dir": tmp_path, "database_url": "postgresql://x/y",
                  "master_key": "k", "jwt_signing_keys": "a:" + "b" * 40, "operator_password": "p"}  # fmt: skip
    with pytest.raises(ValueError, match="production requires AUDIT_CHECKPOINT_SIGNING_KEYS"):
        Settings(**production)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="AUDIT_CHECKPOINT_SIGNING_KEYS: signer key hash does not match"):
        Settings(**production, checkpoint_signing_keys=new[:-3] + "AAA")  # type: ignore[arg-type]
    assert isinstance(verifiable_log_plugin(Settings(**production, checkpoint_signing_keys=new)), VerifiableLogPlugin)  # type: ignore[arg-type]
    unset = Settings(env=Environment.test, data_dir=tmp_path)  # tests only: no key, no integration
    assert not isinstance(verifiable_log_plugin(unset), VerifiableLogPlugin)
    dev = Settings(env=Environment.development, data_dir=tmp_path / "dev").ensure_dev_secrets()
    assert checkpoint_keys(dev).signer.name == "auditlog.example"  # generated once into secrets.json
    again = Settings(env=Environment.development, data_dir=tmp_path / "dev").ensure_dev_secrets()
    assert again.checkpoint_signing_keys == dev.checkpoint_signing_keys
