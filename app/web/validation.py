"""One rule for every JSON request body: what is refused, with which status, naming what.

- A body that is not JSON (empty, malformed, not UTF-8) → ``400`` with one message, :data:`NOT_JSON`.
- JSON nested deeper than ``AUDIT_MAX_JSON_DEPTH`` levels (the body itself is level 1) → ``400``. Without
  the cap a 6 KB body of 1,000 nested objects exhausts the decoder's recursion (a 500) and every later walk
  over it (masking, search text) costs stack.
- A query parameter sent with an empty value → ``422`` (leave it out instead; ``refuse_empty_parameters``).
- A JSON body whose fields break their rules → ``422`` whose ``errors`` name every bad field (``field``
  the dotted name, ``pointer`` an RFC 6901 pointer into the body, ``message``), unknown fields included:
  no request body accepts a field it does not declare (the event body declares ``id``, ``tenant_id`` and
  ``received_at`` and ignores them).

:class:`JsonBodyRequest` applies it to every handler that takes a ``data`` msgspec ``Struct`` (Litestar reads
bodies through ``Request.json``); the ingest routes, which decode bytes themselves, use the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.types import Empty

from app.web.errors import NOT_JSON, ApiError

__all__ = [
    "MAX_ERRORS",
    "NOT_JSON",
    "BodyProblem",
    "JsonBodyRequest",
    "check_depth",
    "decode_json",
    "json_request_class",
    "not_json",
    "parse_struct",
    "pointer",
    "refuse_empty_parameters",
    "struct_problems",
    "too_deep",
    "unprocessable",
    "validation_error_path",
]

MAX_ERRORS: Final = 100
"""At most this many field errors are listed in one problem (the rest are summarised)."""

_any: Final = msgspec.json.Decoder()


def _number(text: str) -> int | float:
    """JSON Schema counts ``870.0`` as an integer: read integral numbers as ``int`` (Struct bodies only)."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


_struct_body: Final = msgspec.json.Decoder(float_hook=_number)
Path = tuple[str | int, ...]
S = TypeVar("S", bound=msgspec.Struct)
_PATH_TOKEN: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


class BodyProblem(msgspec.Struct, frozen=True):
    """One refused field: where (``path`` inside the body) and why."""

    path: Path
    message: str

    def as_error(self, prefix: Path = ()) -> dict[str, Any]:
        full = (*prefix, *self.path)
        field = ".".join(str(p) for p in self.path if not isinstance(p, int)) or "body"
        return {"field": field, "pointer": pointer(full), "message": self.message}


def pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 JSON pointer of ``path`` (``""`` is the whole body)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def too_deep(max_depth: int) -> ApiError:
    return ApiError(400, f"the body is nested deeper than {max_depth} levels (AUDIT_MAX_JSON_DEPTH)")


def not_json() -> ApiError:
    return ApiError(400, NOT_JSON)


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def check_depth(body: bytes, value: Any, max_depth: int) -> None:
    """Refuse ``value`` (decoded from ``body``) when it nests deeper than ``max_depth`` (400).

    Counting brackets in C first spares the walk for every body that could not nest that deep.
    """
    if body.count(b"{") + body.count(b"[") > max_depth and _depth_exceeds(value, max_depth):
        raise too_deep(max_depth)


def decode_json(body: bytes, *, max_depth: int, integral_floats: bool = False) -> Any:
    """``body`` as JSON builtins, or a ``400`` (not JSON, not UTF-8, or nested too deeply).

    ``integral_floats``: ``870.0`` is read as ``870``, as JSON Schema's ``integer`` allows (not for event
    bodies, whose metadata must keep the number it was given).
    """
    try:
        value = (_struct_body if integral_floats else _any).decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise not_json() from None
    except RecursionError:
        raise too_deep(max_depth) from None
    check_depth(body, value, max_depth)
    return value


def validation_error_path(exc: msgspec.ValidationError) -> tuple[Path, str]:
    """Split msgspec's ``"<message> - at `$.a[0].b`"`` into ``(("a", 0, "b"), message)``."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$`"
    path: list[str | int] = []
    for token in _PATH_TOKEN.finditer(where.rstrip("`").removeprefix("$")):
        name, index = token.group(1), token.group(2)
        if name is None and index is None:  # ``[...]``: a mapping key msgspec does not name; stop at the mapping
            break
        path.append(int(index) if index is not None else name)
    for marker, rewrite in (("Object missing required field `", "is required"),
                            ("Object contains unknown field `", "is not a known field")):  # fmt: skip
        if message.startswith(marker):
            path.append(message[len(marker) :].rstrip("`"))
            message = rewrite
    return tuple(path), message


def struct_problems(data: Any, struct: type[msgspec.Struct]) -> list[BodyProblem]:
    """Every field of ``data`` that breaks ``struct``'s rules, unknown fields included (no early stop)."""
    if not isinstance(data, dict):
        return [BodyProblem((), "must be a JSON object")]
    problems: list[BodyProblem] = []
    fields = msgspec.structs.fields(struct)
    for field in fields:
        if field.encode_name not in data:
            if field.required:
                problems.append(BodyProblem((field.encode_name,), "is required"))
            continue
        try:
            msgspec.convert(data[field.encode_name], field.type)
        except msgspec.ValidationError as exc:
            path, message = validation_error_path(exc)
            problems.append(BodyProblem((field.encode_name, *path), message))
    known = {field.encode_name for field in fields}
    problems.extend(BodyProblem((key,), "is not a known field") for key in data if key not in known)
    return problems


def unprocessable(errors: list[dict[str, Any]], *, more: int = 0) -> ApiError:
    """The ``422`` listing ``errors`` (at most :data:`MAX_ERRORS`; ``more`` counts those not even collected)."""
    shown = errors[:MAX_ERRORS]
    named = [(f"item {e['index']}: " if "index" in e else "") + f"{e['field']}: {e['message']}" for e in shown[:5]]
    rest = len(errors) - len(named) + more
    return ApiError(422, "; ".join(named) + (f"; and {rest} more" if rest else ""), errors=shown)


def parse_struct(data: Any, struct: type[S]) -> S:
    """``data`` (JSON builtins) as ``struct``, or a ``422`` naming every bad field."""
    try:
        value = msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        problems = struct_problems(data, struct) or [BodyProblem(*validation_error_path(exc))]  # a rule across fields
        raise unprocessable([p.as_error() for p in problems]) from None
    if isinstance(data, dict):  # a Struct that would ignore unknown fields: refuse them all the same
        known = {field.encode_name for field in msgspec.structs.fields(struct)}
        unknown = [BodyProblem((key,), "is not a known field").as_error() for key in data if key not in known]
        if unknown:
            raise unprocessable(unknown)
    return value


def _body_struct(handler: HTTPRouteHandler) -> type[msgspec.Struct] | None:
    field = handler.parsed_fn_signature.parameters.get("data")
    annotation = getattr(field, "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


def json_request_class(max_depth: int) -> type[Request[Any, Any, Any]]:
    """The app's request class, with the JSON nesting cap of the settings."""
    return type("JsonBodyRequest", (JsonBodyRequest,), {"max_depth": max_depth})


class JsonBodyRequest(Request[Any, Any, Any]):
    """Litestar's request, reading JSON bodies by :mod:`app.web.validation`'s rule (see the module docstring)."""

    max_depth: int = 32

    async def json(self) -> Any:
        state = self._connection_state
        if state.json is not Empty:
            return state.json
        body = await self.body()
        value = decode_json(body, max_depth=self.max_depth, integral_floats=True) if body else None
        handler = self.route_handler
        struct = _body_struct(handler) if isinstance(handler, HTTPRouteHandler) else None
        if struct is not None:
            if not body:
                raise not_json()
            parse_struct(value, struct)
        state.json = value
        return value


async def refuse_empty_parameters(request: Request[Any, Any, Any]) -> None:
    """A query parameter sent empty (``?start_time=``) is refused (422) rather than read as absent."""
    empty = sorted({name for name, value in request.query_params.multi_items() if value == ""})
    if empty:
        raise unprocessable(
            [{"field": name, "in": "query", "message": "must not be empty; leave the parameter out"} for name in empty]
        )
