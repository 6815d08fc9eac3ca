"""C2SP signed notes and checkpoints, signed with Ed25519 (https://c2sp.org/signed-note, c2sp.org/tlog-checkpoint).

A checkpoint is the note text ``<origin>\\n<tree size>\\n<base64 root hash>\\n``; the signed note appends a
blank line and one line per signature, ``— <key name> <base64(key hash ‖ signature)>\\n``, where the key
hash is the first 4 bytes of ``SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)`` and the signature is Ed25519 over
the note text. Keys are written as the Go ``golang.org/x/mod/sumdb/note`` tools write them:
``PRIVATE+KEY+<name>+<hash hex>+<base64(0x01 ‖ seed)>`` and ``<name>+<hash hex>+<base64(0x01 ‖ public key)>``.

Only ``cryptography`` besides the standard library: the offline verifier uses this module too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "format_checkpoint",
    "generate_signer_key",
    "open_checkpoint",
    "parse_checkpoint",
]

ALG_ED25519 = 0x01
_DASH = "\u2014 "


class NoteError(ValueError):
    """A key, note or checkpoint that is malformed, or a signature that does not verify."""


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without '+' or spaces")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    key_hash: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)  # base64 may contain '+'; a name may not
        if len(parts) != 3:
            raise NoteError("a verifier key reads <name>+<hash>+<base64 key>")
        name, hash_hex, key_b64 = parts
        _check_name(name)
        raw = _b64(key_b64, "verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
        if _key_hash(name, raw[1:]).hex() != hash_hex.lower():
            raise NoteError("verifier key hash does not match its name and key")
        return cls(name, bytes.fromhex(hash_hex), raw[1:])

    def text(self) -> str:
        return f"{self.name}+{self.key_hash.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name)
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = NoteVerifier(name, _key_hash(name, public), public)

    @classmethod
    def parse(cls, text: str) -> NoteSigner:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("a signer key reads PRIVATE+KEY+<name>+<hash>+<base64 key>")
        _, _, name, hash_hex, key_b64 = parts
        raw = _b64(key_b64, "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("signer key is not an Ed25519 key (0x01 followed by a 32-byte seed)")
        signer = cls(name, raw[1:])
        if signer.verifier.key_hash.hex() != hash_hex.lower():
            raise NoteError("signer key hash does not match its name and key")
        return signer

    def text(self) -> str:
        seed = base64.b64encode(bytes([ALG_ED25519]) + self._key.private_bytes_raw()).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_hash.hex()}+{seed}"

    def sign(self, note_text: str) -> str:
        """The signed note: ``note_text`` (ending in a newline), a blank line, this key's signature line."""
        if not note_text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        signature = self._key.sign(note_text.encode())
        line = base64.b64encode(self.verifier.key_hash + signature).decode()
        return f"{note_text}\n{_DASH}{self.name} {line}\n"


def generate_signer_key(name: str) -> str:
    """A new ``PRIVATE+KEY+...`` signer key text."""
    return NoteSigner(name, Ed25519PrivateKey.generate().private_bytes_raw()).text()


def open_note(signed: str, verifiers: list[NoteVerifier]) -> str:
    """The note text of ``signed`` if one of its signatures verifies under one of ``verifiers``; else raise."""
    body, sep, sigs = signed.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures, or no final newline)")
    text = body + "\n"
    for line in sigs[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise NoteError("malformed signature line")
        name, _, sig_b64 = line[len(_DASH) :].partition(" ")
        raw = _b64(sig_b64, "signature")
        if len(raw) < 5:
            raise NoteError("signature line too short")
        for verifier in verifiers:
            if verifier.name == name and verifier.key_hash == raw[:4] and verifier.verify(text.encode(), raw[4:]):
                return text
    raise NoteError("no signature by a known key verifies")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes


def format_checkpoint(checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root_hash).decode()
    return f"{checkpoint.origin}\n{checkpoint.tree_size}\n{root}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a tree size and a root hash line")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError("checkpoint tree size is not a decimal number")
    root_hash = _b64(root, "checkpoint root hash")
    if len(root_hash) != 32:
        raise NoteError("checkpoint root hash is not 32 bytes")
    return Checkpoint(origin, int(size), root_hash)


def open_checkpoint(signed: str, verifiers: list[NoteVerifier], *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse it; with ``origin``, refuse a checkpoint of another log."""
    checkpoint = parse_checkpoint(open_note(signed, verifiers))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
