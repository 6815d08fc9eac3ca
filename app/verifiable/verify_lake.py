"""``auditlog verify <tenant's lake folder>``: check a tenant's Parquet lake offline against a signed checkpoint.

The lake export writes each event as one row with its clear columns, its stored payload ciphertext and its
leaf hash (``analytics.lake.schema.PROOF_COLUMNS``), and the tenant's latest checkpoint within the lake as
``tenant_id=<uuid>/checkpoint``. The verifier

1. opens the checkpoint (that file, or one the auditor kept, ``--checkpoint``) with the given key(s) and
   requires it to be the log of the folder's tenant (origin ``<name>/<tenant id>``);
2. reads every ``*.parquet`` file under the folder (only the columns readable without a key) and recomputes
   each row's leaf from its columns and the folder's tenant id (``db.leaf``); a row that does not hash to its
   own ``leaf_hash`` is named (file, row, seq, event id);
3. requires one row per leaf ``0 .. size - 1`` of the checkpoint's tree (``seq`` = leaf index + 1): a missing
   seq (a deleted row) or two different rows for one seq (an inserted one) is named;
4. recomputes the root from the recomputed leaves and requires the checkpoint's root. If it differs while
   the stored ``leaf_hash`` column still leads to the root, the rows named in 2 are exactly the altered ones;
   if both differ, rows were altered together with their ``leaf_hash``, and only the root says so.

Rows past the checkpoint's size are checked against their own ``leaf_hash`` only, and reported as not
covered (the next lake export's checkpoint covers them). The same row in two files (a compacted file and
the files it replaced, until the collector deletes them; the offline verifier has no manifest) is reported,
not failed; two *different* rows for one seq always fail. The encrypted columns (``metadata``,
``before_state``, ``after_state``) are not read: the leaf binds their ciphertext, ``payload``, instead.
Depends on ``pyarrow`` (to read Parquet), the standard library and ``cryptography`` (Ed25519).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.verifiable import merkle
from app.verifiable.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from db.leaf import flat_leaf_hasher, packed_ip

__all__ = ["CHECKPOINT_FILE", "LakeReport", "verify_lake"]

CHECKPOINT_FILE = "checkpoint"
_TENANT_DIR = re.compile(r"^tenant_id=([0-9a-f-]{36})$")
_LEAF_COLUMNS = (
    "seq", "id", "timestamp", "received_at", "action", "resource_type", "resource_id", "user_id", "session_id",
    "request_id", "severity", "ip_address", "user_agent", "message", "payload", "leaf_hash",
)  # fmt: skip
_LISTED = 20


@dataclass
class LakeReport:
    tenant_id: uuid.UUID | None = None
    checkpoint: Checkpoint | None = None
    files: int = 0
    rows: int = 0
    covered: int = 0
    """Leaves of the checkpoint's tree found in the lake and verified."""
    beyond: int = 0
    """Rows past the checkpoint's size (checked against their own leaf hash only)."""
    duplicates: int = 0
    """Identical second copies of a row in another file (reported, not failed)."""
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checkpoint is not None and not self.failures


def _tenant_folder(folder: Path) -> tuple[Path, uuid.UUID]:
    """The tenant's folder and id: ``folder`` itself (``tenant_id=<uuid>``) or a lake root holding exactly one."""
    match = _TENANT_DIR.match(folder.name)
    if match:
        return folder, uuid.UUID(match.group(1))
    tenants = [p for p in folder.iterdir() if p.is_dir() and _TENANT_DIR.match(p.name)] if folder.is_dir() else []
    if len(tenants) != 1:
        raise ValueError(f"{folder}: give a tenant's lake folder (tenant_id=<uuid>), not a folder holding "
                         f"{len(tenants)} of them")  # fmt: skip
    return tenants[0], uuid.UUID(_TENANT_DIR.match(tenants[0].name).group(1))  # type: ignore[union-attr]


def _parquet_files(folder: Path) -> list[Path]:
    """Every ``*.parquet`` under ``folder``, skipping staging folders (``_…``, ``.…``), in name order."""
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts[:-1])
    )


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1, row) of a lake file, the plain columns only (no key needed)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    missing = [c for c in _LEAF_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"no {', '.join(missing)} column (written before lake files carried leaf data)")
    number = 0
    for batch in parquet.iter_batches(columns=list(_LEAF_COLUMNS), use_threads=False):
        columns = {}
        for name in _LEAF_COLUMNS:
            column = batch.column(name)
            if pa.types.is_timestamp(column.type):
                column = pc.cast(column.cast(pa.timestamp("us", tz="UTC")), pa.int64())
            columns[name] = column.to_pylist()
        for i in range(batch.num_rows):
            number += 1
            yield number, {name: values[i] for name, values in columns.items()}


def _flat(row: dict[str, Any]) -> tuple[Any, ...]:
    ip = row["ip_address"]
    return (
        row["seq"], row["id"], row["timestamp"], row["received_at"], row["action"], row["resource_type"],
        row["resource_id"], row["user_id"], row["session_id"], row["request_id"], row["severity"],
        None if ip is None else packed_ip(ip), row["user_agent"], row["message"], row["payload"],
    )  # fmt: skip


def _listed(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers[:_LISTED]) + (" ..." if len(numbers) > _LISTED else "")


def verify_lake(
    folder: Path, verifiers: list[NoteVerifier], *, checkpoint: str | None = None, origin: str | None = None
) -> LakeReport:
    """Check the tenant's lake under ``folder`` against ``checkpoint`` (default: the folder's own file).

    Raises ``ValueError`` / ``OSError`` when the folder or checkpoint file cannot be read at all.
    """
    report = LakeReport()
    tenant_dir, tenant_id = _tenant_folder(folder)
    report.tenant_id = tenant_id
    if checkpoint is None:
        source = tenant_dir / CHECKPOINT_FILE
        if not source.is_file():
            raise ValueError(f"{source} does not exist: give a checkpoint with --checkpoint")
        checkpoint = source.read_text(encoding="utf-8")
    try:
        opened = open_checkpoint(checkpoint, verifiers, origin=origin)
    except NoteError as exc:
        report.failures.append(f"checkpoint refused: {exc}")
        return report
    if opened.origin.rpartition("/")[2] != str(tenant_id):
        report.failures.append(f"the checkpoint is of log {opened.origin}, the folder of tenant {tenant_id}")
        return report
    report.checkpoint = opened
    size = opened.tree_size
    leaf = flat_leaf_hasher(tenant_id)
    computed = bytearray(size * merkle.HASH_SIZE)
    stored = bytearray(size * merkle.HASH_SIZE)
    seen = bytearray(size)
    beyond: dict[int, bytes] = {}
    for path in _parquet_files(tenant_dir):
        report.files += 1
        name = path.relative_to(tenant_dir)
        first_copy: dict[int, bytes] = {}
        try:
            for number, row in _rows(path):
                report.rows += 1
                seq = row["seq"]
                where = f"{name} row {number} (seq {seq}, event {row['id']})"
                try:
                    got = leaf(_flat(row))
                except (TypeError, ValueError, AttributeError) as exc:
                    report.failures.append(f"{where}: malformed: {exc}")
                    continue
                given = row["leaf_hash"]
                if given is None:
                    report.failures.append(f"{where}: no leaf hash (a row compacted from a file written before lake "
                                           "files carried leaf data): it cannot be verified")  # fmt: skip
                elif given != got:
                    report.failures.append(f"{where}: the row does not hash to its leaf hash (it was altered)")
                if not isinstance(seq, int) or seq < 1:
                    report.failures.append(f"{where}: seq {seq!r} is not a position in the log")
                    continue
                if seq in first_copy:
                    report.failures.append(f"{where}: seq {seq} appears twice in this file (a row was inserted)")
                    continue
                first_copy[seq] = got
                if seq > size:
                    previous = beyond.setdefault(seq, got)
                    if previous != got:
                        report.failures.append(f"{where}: another file holds a different row for seq {seq}")
                    continue
                at = (seq - 1) * merkle.HASH_SIZE
                if seen[seq - 1]:
                    if computed[at : at + merkle.HASH_SIZE] != got:
                        report.failures.append(f"{where}: another file holds a different row for seq {seq} "
                                               "(a row was inserted or replaced)")  # fmt: skip
                    else:
                        report.duplicates += 1
                    continue
                seen[seq - 1] = 1
                computed[at : at + merkle.HASH_SIZE] = got
                if isinstance(given, bytes) and len(given) == merkle.HASH_SIZE:
                    stored[at : at + merkle.HASH_SIZE] = given
        except (OSError, ValueError) as exc:
            report.failures.append(f"{name}: cannot be read: {exc}")
    report.beyond = len(beyond)
    missing = [i for i in range(size) if not seen[i]]
    report.covered = size - len(missing)
    if missing:
        last = max((i for i in range(size) if seen[i]), default=-1)
        if missing[0] > last:
            report.failures.append(
                f"the checkpoint covers {size} leaves, the lake holds only the first {missing[0]}: the lake ends "
                "before the checkpoint (verify against the lake's own checkpoint file or an older one)"
            )
        else:
            report.failures.append(
                f"{len(missing)} leaf/leaves of the checkpoint have no row in the lake (rows deleted), by seq: "
                + _listed([i + 1 for i in missing])
            )
    else:
        root = merkle.root_from_leaves(_hashes(computed))
        if root != opened.root_hash:
            if merkle.root_from_leaves(_hashes(stored)) == opened.root_hash:
                report.failures.append("the rows do not hash to the checkpoint's root; the rows named above were "
                                       "altered")  # fmt: skip
            else:
                report.failures.append("the rows do not hash to the checkpoint's root (rows altered together with "
                                       "their leaf_hash, or replaced)")  # fmt: skip
    if report.beyond:
        report.notes.append(f"{report.beyond} row(s) past the checkpoint's size {size} are not covered by it "
                            "(checked against their own leaf hash only)")  # fmt: skip
    if report.duplicates:
        report.notes.append(f"{report.duplicates} row(s) appear identically in two files (a compacted file and a "
                            "file it replaced, not yet collected?)")  # fmt: skip
    return report


def _hashes(packed: bytearray) -> Iterator[bytes]:
    view = memoryview(packed)
    for at in range(0, len(packed), merkle.HASH_SIZE):
        yield bytes(view[at : at + merkle.HASH_SIZE])
