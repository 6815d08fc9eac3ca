"""The keyed blind index of ``q`` (``db.blind_index``) and the lake's reading of the same query."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from analytics.filters import lake_expression
from db.blind_index import SearchIndex, Term, parse_q, search_index, words
from db.crypto import DataKey, TenantKeyring, new_data_key
from db.event_filters import Binder, LogFilters, filter_predicate


def _keyring(tenant: uuid.UUID | None = None) -> TenantKeyring:
    return TenantKeyring(tenant or uuid.uuid4(), new_data_key(1))


def test_parse_q_follows_websearch_syntax() -> None:
    a, b, c = Term(("a",)), Term(("b",)), Term(("c",))
    assert parse_q("a b or c") == [[a, b], [c]]
    assert parse_q("a or b c") == [[a], [b, c]]
    parsed = parse_q('-x "Foo  bar" baz-qux')
    assert parsed == [[Term(("x",), True), Term(("foo", "bar")), Term(("baz", "qux"))]]
    assert [t.text for t in parsed[0]] == ["x", "Foo  bar", "baz-qux"]
    assert parse_q('"unclosed phrase') == [[Term(("unclosed", "phrase"))]]
    assert parse_q("or") == [] and parse_q("- ! & |") == [] and parse_q("") == []
    assert parse_q("or a or") == [[a]]
    assert parse_q("-or") == [[Term(("or",), True)]]


def test_vector_holds_only_tokens_of_metadata_values() -> None:
    index = SearchIndex(os.urandom(32))
    vector = index.vector({"who": "Secretvalue x", "n": [42, True, None], "k": {"d": 1.5}, "again": "x"})
    lexemes = re.findall(r"'([^']+)'", vector)
    assert "secretvalue" not in vector.lower() and "42" not in vector and ":" not in vector  # no positions
    assert sorted(lexemes) == sorted(index.token(w) for w in ("secretvalue", "x", "42", "1", "5"))
    assert all(t.startswith("M") and len(t) == 12 for t in lexemes)
    assert index.vector(None) == "" and index.vector({"a": True, "b": [None]}) == ""


def test_tokens_depend_on_the_tenant_key_and_survive_rotation() -> None:
    tenant = uuid.uuid4()
    ring = _keyring(tenant)
    rotated = ring.with_active(new_data_key(2))
    assert search_index(ring).token("word") == search_index(rotated).token("word")
    assert search_index(ring).token("word") != search_index(_keyring(tenant)).token("word")  # other keys
    same_key_other_tenant = TenantKeyring(uuid.uuid4(), DataKey(1, ring.keys[1].key))
    assert search_index(ring).token("word") != search_index(same_key_other_tenant).token("word")
    assert len(search_index(ring).token("word")) == 12  # "M" + 8 bytes in base64url


def test_query_asks_for_the_message_phrase_or_the_metadata_tokens() -> None:
    index = SearchIndex(os.urandom(32))
    t = index.token
    bind = Binder()
    sql = index.tsquery_sql('"a b" -c or D-e', bind)
    assert sql == (
        "((phraseto_tsquery('simple', $1) || $2::tsquery) && (!! (phraseto_tsquery('simple', $3) || $4::tsquery)))"
        " || ((phraseto_tsquery('simple', $5) || $6::tsquery))"
    )
    assert bind.args == ["a b", f"'{t('a')}' & '{t('b')}'", "c", f"'{t('c')}'", "D-e", f"'{t('d')}' & '{t('e')}'"]
    assert index.tsquery_sql("!!", Binder()) is None


def test_filter_predicate_needs_the_index_for_q_and_binds_the_query() -> None:
    tenant = uuid.uuid4()
    with pytest.raises(ValueError, match="search index"):
        filter_predicate(tenant, LogFilters(q="x"), Binder())
    bind = Binder()
    index = SearchIndex(os.urandom(32))
    sql = filter_predicate(tenant, LogFilters(q="secret"), bind, search=index)
    assert "search @@ (SELECT ((phraseto_tsquery('simple', $" in sql and "secret" not in sql
    assert bind.args[-2:] == ["secret", f"'{index.token('secret')}'"]
    assert "false" in filter_predicate(tenant, LogFilters(q="--"), Binder(), search=index).split(" AND ")


ROWS: list[dict[str, Any]] = [
    {"message": "Alice deleted the invoice", "metadata": {"who": "bob", "tags": ["red", "green"]}},
    {"message": "bob logged in", "metadata": {"note": "alice approved"}},
    {"message": None, "metadata": {"red": "blue", "n": 42}},
    {"message": "Café opened, déjà vu", "metadata": None},
    {"message": "approved alice", "metadata": {"text": 'quote " and \\ slash', "flag": True}},
    {"message": "invoice-42 paid", "metadata": {"deep": {"list": [{"x": "Invoice"}]}}},
]
QUERIES = [
    "alice",
    "bob",
    "red",
    "blue",
    "42",
    "alice approved",
    '"alice approved"',
    '"approved alice"',
    "invoice -bob",
    "red or café",
    "déjà",
    "true",
    "who",
    "invoice 42",
    '"invoice 42"',
    "slash quote",
    "-alice",
    "!!",
]


def _oracle(row: dict[str, Any], q: str) -> bool:
    """The blind index's semantics: a term matches the message as a phrase, or all its words among the
    metadata values' words."""
    from db.blind_index import metadata_strings

    message = words(row["message"] or "")
    values = {w for v in metadata_strings(row["metadata"]) for w in words(v)}

    def term(t: Term) -> bool:
        n = len(t.words)
        phrase = any(tuple(message[i : i + n]) == t.words for i in range(len(message) - n + 1))
        hit = phrase or all(w in values for w in t.words)
        return not hit if t.negated else hit

    return any(all(term(t) for t in group) for group in parse_q(q))


@pytest.mark.parametrize("q", QUERIES)
def test_lake_rows_match_q_as_the_index_does(q: str) -> None:
    table = pa.table(
        {
            "message": pa.array([r["message"] for r in ROWS], pa.string()),
            "metadata": pa.array(
                [None if r["metadata"] is None else msgspec.json.encode(r["metadata"]).decode() for r in ROWS],
                pa.string(),
            ),
        }
    )
    expression = lake_expression(LogFilters(q=q, include_system=True))
    assert expression is not None
    got = ds.dataset(table).to_table(filter=expression).column("message").to_pylist()
    wanted = [r["message"] for r in ROWS if _oracle(r, q)]
    assert got == wanted, q


def test_a_nul_in_q_never_reaches_postgresql() -> None:
    bind = Binder()
    assert SearchIndex(os.urandom(32)).tsquery_sql("a\x00b", bind) is not None
    assert all("\x00" not in str(arg) for arg in bind.args)
