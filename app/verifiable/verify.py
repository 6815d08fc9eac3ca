"""``auditlog verify``: check an export with proofs offline, with nothing but the checkpoint verifier key.

The export (``GET /api/v1/logs/export?format=ndjson&proofs=true``) is one JSON line per leaf and a last
line ``{"checkpoint": ...}``. The verifier

1. opens the checkpoint with the given key(s) (C2SP signed note, Ed25519) and reads origin, size and root;
2. requires one line per leaf, ``leaf_index`` 0..size-1 in order (a deleted, inserted or moved line fails);
3. recomputes each event's leaf from the event itself (``db.leaf``: its clear fields and the
   stored payload ciphertext in ``proof.payload``) and requires it to equal ``proof.leaf_hash`` and to lead,
   through ``proof.hashes``, to the checkpoint's root (RFC 6962 inclusion);
4. requires every event to belong to the checkpoint's tenant (origin ``<name>/<tenant id>``);
5. recomputes the root from all leaves and requires it to equal the checkpoint's.

Erased leaves (``{"erased": true}``: events removed by retention) are checked by their proofs only. The
decrypted parts (``metadata``, ``before_state``, ``after_state``) are not covered offline: the leaf binds
their ciphertext, which the verifier hashes without a key. Depends on the standard library and
``cryptography`` (Ed25519) only.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.verifiable import merkle
from app.verifiable.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from db.leaf import LeafFields, leaf_hash

__all__ = ["Report", "parse_verifier_keys", "verify_export"]


@dataclass
class Report:
    checkpoint: Checkpoint | None = None
    events: int = 0
    erased: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checkpoint is not None and not self.failures


def parse_verifier_keys(text: str) -> list[NoteVerifier]:
    """Verifier keys, one a line (the ``/.well-known/auditlog/checkpoint-key`` body), or a single key."""
    return [NoteVerifier.parse(line) for line in text.splitlines() if line.strip()]


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("time without a zone")
    return parsed


def _opt(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _req(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _leaf_of(event: dict[str, Any], index: int, payload: Any) -> bytes:
    return leaf_hash(
        LeafFields(
            tenant_id=uuid.UUID(_req(event.get("tenant_id"))),
            seq=index + 1,
            id=uuid.UUID(_req(event.get("id"))),
            timestamp=_time(event.get("timestamp")),
            received_at=_time(event.get("received_at")),
            action=_req(event.get("action")),
            resource_type=_req(event.get("resource_type")),
            resource_id=_opt(event.get("resource_id")),
            user_id=_opt(event.get("user_id")),
            session_id=_opt(event.get("session_id")),
            request_id=_opt(event.get("request_id")),
            severity=_req(event.get("severity")),
            ip_address=_opt(event.get("ip_address")),
            user_agent=_opt(event.get("user_agent")),
            message=_opt(event.get("message")),
            payload=None if payload is None else base64.b64decode(_req(payload), validate=True),
        )
    )


def _b64_hash(value: Any) -> bytes:
    raw = base64.b64decode(_req(value), validate=True)
    if len(raw) != merkle.HASH_SIZE:
        raise ValueError("a hash is 32 bytes")
    return raw


def verify_export(lines: Iterable[str], verifiers: list[NoteVerifier], *, origin: str | None = None) -> Report:
    report = Report()
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except ValueError:
            report.failures.append(f"line {number}: not JSON")
    if not records or not isinstance(records[-1][1], dict) or "checkpoint" not in records[-1][1]:
        report.failures.append('the last line is not {"checkpoint": ...}')
        return report
    try:
        checkpoint = open_checkpoint(records[-1][1]["checkpoint"], verifiers, origin=origin)
    except (NoteError, TypeError) as exc:
        report.failures.append(f"checkpoint refused: {exc}")
        return report
    report.checkpoint = checkpoint
    tenant = checkpoint.origin.rpartition("/")[2]
    leaves: list[bytes | None] = [None] * checkpoint.tree_size
    expected = 0
    for number, record in records[:-1]:
        where = f"line {number}"
        if not isinstance(record, dict) or not isinstance(record.get("proof"), dict):
            report.failures.append(f"{where}: no proof object")
            continue
        proof = record["proof"]
        index = proof.get("leaf_index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < checkpoint.tree_size:
            report.failures.append(f"{where}: leaf_index {index!r} is not in the checkpoint's tree")
            continue
        if index != expected:
            report.failures.append(f"{where}: leaf {index} where leaf {expected} was expected (lines deleted, "
                                   "inserted or moved)")  # fmt: skip
        expected = max(expected, index + 1)
        erased = record.get("erased") is True
        where = f"{where} (leaf {index}" + ("" if erased else f", event {record.get('id')}") + ")"
        try:
            given = _b64_hash(proof.get("leaf_hash"))
            path = [_b64_hash(h) for h in proof.get("hashes") or []]
            if erased:
                leaf = given
                report.erased += 1
            else:
                report.events += 1
                leaf = _leaf_of(record, index, proof.get("payload"))
                if str(record.get("tenant_id")) != tenant:
                    report.failures.append(
                        f"{where}: event of tenant {record.get('tenant_id')}, checkpoint of {tenant}"
                    )
                if leaf != given:
                    report.failures.append(f"{where}: the event does not hash to its leaf (it was altered)")
        except (ValueError, TypeError, binascii.Error) as exc:
            report.failures.append(f"{where}: malformed: {exc}")
            continue
        if leaves[index] is not None:
            report.failures.append(f"{where}: leaf {index} appears twice")
        leaves[index] = leaf
        try:
            merkle.verify_inclusion(index, checkpoint.tree_size, leaf, path, checkpoint.root_hash)
        except merkle.ProofError as exc:
            report.failures.append(f"{where}: inclusion proof fails: {exc}")
    missing = [i for i, leaf in enumerate(leaves) if leaf is None]
    if missing:
        shown = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        report.failures.append(f"{len(missing)} leaf/leaves of the checkpoint missing from the export: {shown}")
    elif merkle.root_from_leaves([leaf for leaf in leaves if leaf is not None]) != checkpoint.root_hash:
        report.failures.append("the leaves do not hash to the checkpoint's root")
    return report
