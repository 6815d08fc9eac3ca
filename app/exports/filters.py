"""The query parameters the analytics routes share: ``GET /logs``'s filters (parsed by ``app.logs.query``)
and their OpenAPI description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from litestar.openapi.spec import Operation

from app.logs.query import LogFilters, parse_filters
from app.logs.query_controller import _LIST_PARAMETERS  # the documented GET /logs filters (one source)
from app.web.errors import ApiError

__all__ = ["FILTER_PARAMETERS", "one_param", "operation_with", "raise_if_errors", "read_filters"]

FILTER_PARAMETERS: list[dict[str, Any]] = [p for p in _LIST_PARAMETERS if p["name"] not in ("limit", "cursor")]


def one_param(params: Mapping[str, Sequence[str]], name: str, errors: list[dict[str, Any]]) -> str | None:
    values = [v for v in params.get(name, ()) if v != ""]
    if len(values) > 1:
        errors.append({"field": name, "message": "may be given only once"})
        return None
    return values[0] if values else None


def read_filters(params: Mapping[str, Sequence[str]], errors: list[dict[str, Any]]) -> LogFilters:
    return parse_filters(params, errors)


def raise_if_errors(errors: list[dict[str, Any]]) -> None:
    if errors:
        fields = ", ".join(dict.fromkeys(str(e["field"]) for e in errors))
        raise ApiError(422, f"invalid query parameters: {fields}", errors=errors)


def operation_with(extra: list[dict[str, Any]]) -> type[Operation]:
    """An ``Operation`` class documenting the filters plus ``extra`` query parameters (the handlers read their
    query string themselves, in one pass that names every bad parameter)."""

    class _Operation(Operation):
        def to_schema(self) -> dict[str, Any]:
            out = super().to_schema()
            out["parameters"] = [*out.get("parameters", []), *FILTER_PARAMETERS, *extra]
            return out

    return _Operation
