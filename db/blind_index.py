r"""The keyed blind index behind ``q``: what ``audit_logs.search`` holds, and the query that reads it.

API.md promises ``metadata`` encrypted at rest, and ``q`` searches its values. A plain ``tsvector`` of the
values would keep every one of them readable on disk (heap, GIN index, WAL, backups), so metadata words are
stored only as keyed tokens: ``M`` + the first 8 bytes of keyed BLAKE2b (a MAC, RFC 7693) of the lower-cased
word under the tenant's *search key*, base64url. The search key is HKDF-SHA256 of the tenant's first data key
(``db.crypto``; rotation adds keys and never removes one, so the key stays put, and destroying the tenant's
keys leaves its tokens meaningless). ``message`` is a plain column by contract, so PostgreSQL indexes its
words itself, as before (``to_tsvector('simple', message)``: the writer adds the tokens to it). A token holds
an upper-case ``M`` and a lexeme of the ``simple`` configuration never does (it lower-cases), so the two can
never be confused.

Metadata words are ``\w+`` runs of the lower-cased values (Python's Unicode word characters), at ingest and
at query time; they match by exact word, and a quoted phrase matches metadata holding all of its words (the
tokens carry no positions, so no order is stored).

The query follows ``websearch_to_tsquery``'s syntax: words are ANDed, ``"quoted phrases"``, ``or`` between
terms (``&`` binds tighter, as in PostgreSQL), ``-word`` excludes. :func:`parse_q` gives the structure (also
used for lake rows, ``analytics.filters``); :meth:`SearchIndex.tsquery_sql` writes it as a SQL ``tsquery``
expression in which each term is ``phraseto_tsquery('simple', <its text>) || <its tokens>``: the message
part exactly as ``websearch_to_tsquery`` read it before (so rows indexed before the blind index match too).

What the index still reveals (README, "Encryption at rest and the blind index of ``q``"): which events share
a metadata word (equal tokens), how often each token occurs, how many distinct words an event's metadata
holds; not the words.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
_INFO: Final = b"auditlog/search/v1"
_WORD: Final = re.compile(r"\w+")
_MEMO_SIZE: Final = 65536
_MEMO_VALUE_CHARS: Final = 64
_CACHE_SIZE: Final = 1024


def words(text: str) -> list[str]:
    """The words of ``text`` as the index stores them (lower-cased ``\\w+`` runs)."""
    return _WORD.findall(text.lower())


def _collect(value: Any, out: list[str]) -> None:
    """:func:`metadata_strings` into a list (the ingest's hot path: no generator per nested value)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            if isinstance(v, str):
                out.append(v)
            else:
                _collect(v, out)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, str):
                out.append(v)
            else:
                _collect(v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(str(value))


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
    text: str = field(default="", compare=False)
    """The term as written (what PostgreSQL's parser reads for the message)."""


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
        term = Term(tuple(found), negated, text.replace("\x00", " "))  # PostgreSQL text holds no NUL
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
    """One tenant's blind index: metadata words to tokens, metadata to ``tsvector`` text, ``q`` to ``tsquery`` SQL.

    Memoises the tokens of recent words and short values (process memory only, like the tenant's unwrapped keys)."""

    __slots__ = ("_key", "_memo", "_values")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a search key is 32 bytes")
        self._key = bytes(key)
        self._memo: dict[str, str] = {}
        self._values: dict[str, tuple[str, ...]] = {}

    def _quoted(self, word: str) -> str:
        """``'token'``: the token of one (lower-cased) metadata word, quoted as a lexeme (memoised)."""
        quoted = self._memo.get(word)
        if quoted is None:
            mac = hashlib.blake2b(word.encode(), key=self._key, digest_size=TOKEN_BYTES).digest()
            quoted = "'M" + base64.urlsafe_b64encode(mac)[:11].decode() + "'"
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[word] = quoted
        return quoted

    def token(self, word: str) -> str:
        """The stored form of one (lower-cased) metadata word."""
        return self._quoted(word)[1:-1]

    def vector(self, metadata: Any) -> str:
        """The ``tsvector`` text of an event's metadata: one token per distinct word, no positions (the writer
        adds PostgreSQL's ``to_tsvector('simple', message)`` to it)."""
        if metadata is None:
            return ""
        values: list[str] = []
        _collect(metadata, values)
        tokens: set[str] = set()
        memo = self._values
        for value in values:
            found = memo.get(value)
            if found is None:
                found = tuple({self._quoted(w) for w in _WORD.findall(value.lower())})
                if len(value) <= _MEMO_VALUE_CHARS:  # short values repeat (codes, regions, plans); long ones rarely
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()
                    memo[value] = found
            tokens.update(found)
        return " ".join(tokens)

    def tsquery_sql(self, q: str, bind: Callable[[Any], str]) -> str | None:
        """``q`` as a SQL ``tsquery`` expression over this index (``bind`` hands out the ``$n`` of its values),
        or ``None`` when it holds no word (nothing matches)."""
        groups = parse_q(q)
        if not groups:
            return None

        def term(t: Term) -> str:
            tokens = " & ".join(self._quoted(w) for w in dict.fromkeys(t.words))
            sql = f"(phraseto_tsquery('simple', {bind(t.text)}) || {bind(tokens)}::tsquery)"
            return f"(!! {sql})" if t.negated else sql

        return " || ".join("(" + " && ".join(term(t) for t in group) + ")" for group in groups)


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
