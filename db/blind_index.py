"""The keyed blind index behind ``q``: what ``audit_logs.search`` holds, and the query that reads it.

API.md promises ``metadata`` encrypted at rest, and ``q`` searches its values. A plain ``tsvector`` of the
values would keep every one of them readable on disk (heap, GIN index, WAL, backups), so metadata words are
stored only as keyed tokens: ``M`` + the first 8 bytes of keyed BLAKE2b (a MAC, RFC 7693) of the lower-cased
word under the tenant's *search key*, base64url. The search key is HKDF-SHA256 of the tenant's first data key
(``db.crypto``; rotation adds keys and never removes one, so the key stays put, and destroying the tenant's
keys leaves its tokens meaningless). ``message`` is a plain column by contract, so its words are stored as
themselves, with positions, so phrases match. A token holds an upper-case ``M`` and a word never does (words
are lower-cased), so the two can never be confused.

Words are ``\\w+`` runs of the lower-cased text (Python's Unicode word characters), for message and metadata
alike, at ingest and at query time: the vector is built here, not by PostgreSQL's parser, so a query word
means the same thing on every reader. Metadata matching is by exact word; a quoted phrase matches the message
as a phrase, or metadata holding all of its words (the tokens carry no positions, so no order is stored).

The query follows ``websearch_to_tsquery``'s syntax: words are ANDed, ``"quoted phrases"``, ``or`` between
terms (``&`` binds tighter, as in PostgreSQL), ``-word`` excludes. :func:`parse_q` gives the structure (also
used for lake rows, ``analytics.filters``); :meth:`SearchIndex.query` writes it as ``tsquery`` text in which
each term is ``(message words | metadata tokens)``.

What the index still reveals (README, "Search and encryption at rest"): which events share a metadata word
(equal tokens), how often each token occurs, how many distinct words an event's metadata holds; not the words.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = [
    "TOKEN_BYTES",
    "SearchIndex",
    "Term",
    "metadata_strings",
    "parse_q",
    "search_index",
    "words",
]

TOKEN_BYTES: Final = 8
"""Bytes of the MAC kept per metadata word (64 bits: a false match needs ~2**64 / distinct words tries)."""
MAX_WORD_BYTES: Final = 2046
"""PostgreSQL's longest lexeme; longer message words are not indexed (``to_tsvector`` drops them too)."""
MAX_POSITION: Final = 16383
MAX_POSITIONS: Final = 256
"""PostgreSQL keeps at most 256 positions per lexeme, each at most 16383."""
_INFO: Final = b"auditlog/search/v1"
_WORD: Final = re.compile(r"\w+")
_MEMO_SIZE: Final = 65536
_CACHE_SIZE: Final = 1024


def words(text: str) -> list[str]:
    """The words of ``text`` as the index stores them (lower-cased ``\\w+`` runs)."""
    return _WORD.findall(text.lower())


def metadata_strings(value: Any) -> Iterator[str]:
    """The searchable values of a metadata document: strings and numbers, nested ones included (not keys,
    not booleans or nulls)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from metadata_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from metadata_strings(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


@dataclass(frozen=True, slots=True)
class Term:
    """One term of a query: a word or a quoted phrase (``words``, in order), possibly excluded."""

    words: tuple[str, ...]
    negated: bool = False


def parse_q(q: str) -> list[list[Term]]:
    """``q`` in ``websearch_to_tsquery``'s syntax as OR-groups of AND-ed terms (``a b or c`` is
    ``[[a, b], [c]]``: ``&`` binds tighter than ``|``). Terms without a word are dropped; no groups at all means
    the query holds no word (and matches nothing, as in PostgreSQL)."""
    groups: list[list[Term]] = [[]]
    pending_or = False
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        negated = q[i] == "-"
        if negated:
            i += 1
        if i < n and q[i] == '"':
            end = q.find('"', i + 1)
            end = n if end < 0 else end
            text, i = q[i + 1 : end], end + 1
        else:
            start = i
            while i < n and not q[i].isspace() and q[i] != '"':
                i += 1
            text = q[start:i]
            if not negated and text.lower() == "or":
                pending_or = True
                continue
        found = words(text)
        if not found:
            continue
        term = Term(tuple(found), negated)
        if pending_or and groups[-1]:
            groups.append([term])
        else:
            groups[-1].append(term)
        pending_or = False
    return [g for g in groups if g]


def _derive(keyring: TenantKeyring) -> bytes:
    first = keyring.keys[min(keyring.keys)]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + keyring.tenant_id.bytes).derive(first.key)


class SearchIndex:
    """One tenant's blind index: metadata words to tokens, events to ``tsvector`` text, ``q`` to ``tsquery`` text.

    Memoises the tokens of recent words (process memory only, like the tenant's unwrapped keys)."""

    __slots__ = ("_key", "_memo")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a search key is 32 bytes")
        self._key = bytes(key)
        self._memo: dict[str, str] = {}

    def token(self, word: str) -> str:
        """The stored form of one (lower-cased) metadata word."""
        token = self._memo.get(word)
        if token is None:
            mac = hashlib.blake2b(word.encode(), key=self._key, digest_size=TOKEN_BYTES).digest()
            token = "M" + base64.urlsafe_b64encode(mac).decode().rstrip("=")
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[word] = token
        return token

    def vector(self, message: str | None, metadata: Any) -> str:
        """The ``tsvector`` text of an event: message words with their positions, metadata tokens without."""
        parts: list[str] = []
        if message:
            positions: dict[str, list[int]] = {}
            for pos, word in enumerate(words(message), start=1):
                at = positions.setdefault(word, [])
                if len(at) < MAX_POSITIONS:
                    at.append(min(pos, MAX_POSITION))
            for word, at in positions.items():
                if len(word.encode()) <= MAX_WORD_BYTES:
                    parts.append(f"'{word}':{','.join(map(str, dict.fromkeys(at)))}")
        if metadata is not None:
            tokens = {self.token(w) for value in metadata_strings(metadata) for w in words(value)}
            parts.extend(f"'{t}'" for t in tokens)
        return " ".join(parts)

    def _term(self, term: Term) -> str:
        hashed = " & ".join(f"'{self.token(w)}'" for w in dict.fromkeys(term.words))
        plain = " <-> ".join(f"'{w}'" for w in term.words)
        if any(len(w.encode()) > MAX_WORD_BYTES for w in term.words):
            text = f"( {hashed} )"  # no message word is that long
        else:
            text = f"( {plain} | {hashed} )"
        return f"!{text}" if term.negated else text

    def query(self, q: str) -> str | None:
        """``q`` as ``tsquery`` text over this index, or ``None`` when it holds no word (nothing matches)."""
        groups = parse_q(q)
        if not groups:
            return None
        return " | ".join("( " + " & ".join(self._term(t) for t in group) + " )" for group in groups)


_indexes: OrderedDict[tuple[uuid.UUID, bytes], SearchIndex] = OrderedDict()


def search_index(keyring: TenantKeyring) -> SearchIndex:
    """The tenant's blind index, its search key derived from the keyring's first data key (cached per key)."""
    first = keyring.keys[min(keyring.keys)]
    cache_key = (keyring.tenant_id, first.key)
    index = _indexes.get(cache_key)
    if index is None:
        index = _indexes[cache_key] = SearchIndex(_derive(keyring))
        if len(_indexes) > _CACHE_SIZE:
            _indexes.popitem(last=False)
    return index
