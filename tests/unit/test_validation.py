"""The body rule's building blocks (``app.web.validation``): decoding, depth, error paths, every bad field."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from app.web.errors import NOT_JSON, ApiError
from app.web.validation import decode_json, parse_struct, pointer, struct_problems, validation_error_path


class Body(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    count: int
    role: Literal["a", "b"] = "a"


def test_bodies_that_are_not_json_are_one_400() -> None:
    for body in (b"\xff", b'{"a": "\xc3\x28"}', b"{", b"[1,", b"nul"):
        with pytest.raises(ApiError) as caught:
            decode_json(body, max_depth=32)
        assert (caught.value.status_code, caught.value.detail) == (400, NOT_JSON)


def test_depth_counts_the_body_as_level_one() -> None:
    assert decode_json(b"[" * 32 + b"]" * 32, max_depth=32)
    for body in (b"[" * 33 + b"]" * 33, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        with pytest.raises(ApiError) as caught:
            decode_json(body, max_depth=32)
        assert caught.value.status_code == 400 and "deeper than 32" in caught.value.detail
    # Brackets inside strings do not count as nesting.
    assert decode_json(b'{"a": "' + b"[" * 100 + b'"}', max_depth=2) == {"a": "[" * 100}


def test_integral_floats_are_integers_for_struct_bodies_only() -> None:
    assert decode_json(b'{"n": 870.0, "x": 1.5}', max_depth=4, integral_floats=True) == {"n": 870, "x": 1.5}
    assert type(decode_json(b'{"n": 870.0}', max_depth=4)["n"]) is float


def test_every_bad_field_is_named_unknown_ones_included() -> None:
    problems = struct_problems({"name": "", "count": "x", "zz": 1}, Body)
    assert {(p.path, p.message.split(" ")[0]) for p in problems} == {
        (("name",), "Expected"),
        (("count",), "Expected"),
        (("zz",), "is"),
    }
    assert [p.as_error() for p in struct_problems({}, Body)] == [
        {"field": "name", "pointer": "/name", "message": "is required"},
        {"field": "count", "pointer": "/count", "message": "is required"},
    ]
    with pytest.raises(ApiError) as caught:
        parse_struct({"name": "n", "count": 1, "role": "c", "extra": True}, Body)
    assert caught.value.status_code == 422
    assert {e["field"] for e in caught.value.errors or []} == {"role", "extra"}


class Outer(msgspec.Struct):
    items: list[Body]


def test_error_paths_and_pointers() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert({"items": [{"name": "n", "count": 1}, {"name": "n", "count": "x"}]}, Outer)
    assert validation_error_path(caught.value) == (("items", 1, "count"), "Expected `int`, got `str`")
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert({"items": [{"name": "n"}]}, Outer)
    assert validation_error_path(caught.value) == (("items", 0, "count"), "is required")
    with pytest.raises(msgspec.ValidationError) as caught:  # mapping keys are not named: the path stops there
        msgspec.convert({"a": [{"b": 1}]}, dict[str, list[dict[str, str]]])
    assert validation_error_path(caught.value) == ((), "Expected `str`, got `int`")
    assert pointer(("items", 3, "a/b~c")) == "/items/3/a~1b~0c"
