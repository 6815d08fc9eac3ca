"""The checkpoint signing keys from the settings: the newest signs, all verify (rotation), all are published."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

from app.settings import Settings
from app.verifiable.note import NoteSigner, NoteVerifier

__all__ = ["CheckpointKeys", "checkpoint_keys"]


@dataclass(frozen=True)
class CheckpointKeys:
    signers: tuple[NoteSigner, ...]
    """Newest first; ``signers[0]`` signs new checkpoints."""
    origin_prefix: str

    @property
    def signer(self) -> NoteSigner:
        return self.signers[0]

    @property
    def verifiers(self) -> list[NoteVerifier]:
        return [s.verifier for s in self.signers]

    def origin(self, tenant_id: uuid.UUID) -> str:
        """The log name (checkpoint origin line) of a tenant's tree."""
        return f"{self.origin_prefix}/{tenant_id}"

    def published(self) -> str:
        """``/.well-known/auditlog/checkpoint-key``: one verifier key a line, newest first."""
        return "".join(v.text() + "\n" for v in self.verifiers)


def checkpoint_keys(settings: Settings) -> CheckpointKeys:
    """The keys of ``AUDIT_CHECKPOINT_SIGNING_KEYS`` (parsed once per distinct value)."""
    return _parse(settings.checkpoint_signing_keys, settings.checkpoint_origin)


@functools.lru_cache(maxsize=8)
def _parse(text: str | None, origin: str) -> CheckpointKeys:
    if not text:
        raise ValueError("AUDIT_CHECKPOINT_SIGNING_KEYS is not set")
    signers = tuple(NoteSigner.parse(part) for part in text.split(",") if part.strip())
    if not signers:
        raise ValueError("AUDIT_CHECKPOINT_SIGNING_KEYS holds no key")
    return CheckpointKeys(signers, origin)
