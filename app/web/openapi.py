"""The OpenAPI document made to tell the truth about errors, once, for every operation.

Handlers document their success bodies and the errors peculiar to them; what every route shares is added
here, after Litestar has built the document, so a new route cannot forget it:

- every error response is an RFC 9457 problem (``application/problem+json``, schema ``Problem``), never
  Litestar's ``{status_code, detail, extra}``;
- each operation lists the errors that apply to it: ``400``/``413``/``422`` with a JSON body, ``422`` with
  parameters, ``404`` with path parameters, ``401``/``403`` unless public, ``409`` for authenticated bodies,
  ``429`` and ``503`` under ``/api/``;
- public routes (``opt={"public": True}``) carry ``security: []``;
- request bodies refuse unknown fields (``app.web.validation``), so their objects say
  ``additionalProperties: false``; query parameters refuse empty values, so strings say ``minLength: 1``;
  ``ip_address`` says it is an IPv4 or IPv6 address.
"""

from __future__ import annotations

import re
from typing import Any, Final

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from app.web.errors import PROBLEM_JSON

__all__ = ["PROBLEM_SCHEMA", "finalize_openapi"]

_REF = "#/components/schemas/Problem"
PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each offending field or parameter (bulk items also carry their index).",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "description": "Dotted field or parameter name"},
                    "pointer": {"type": "string", "description": "RFC 6901 pointer into the body"},
                    "in": {"type": "string", "description": "query, path or header, for a parameter"},
                    "index": {"type": "integer", "description": "The bulk item"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
_IP_FORMATS: Final = [{"format": "ipv4"}, {"format": "ipv6"}]
_GENERIC: Final = {
    400: "The body is not JSON (one message for empty, malformed or non-UTF-8 bodies), or is nested deeper "
    "than AUDIT_MAX_JSON_DEPTH levels",
    401: "No or bad credentials (`WWW-Authenticate: Bearer`)",
    403: "The caller's role may not do this",
    404: "No such resource in the caller's tenant",
    409: "Conflicts with an existing resource",
    413: "The body is larger than this route accepts",
    422: "A field or parameter breaks its rule; `errors` names each one (unknown body fields and empty "
    "parameters included)",
    429: "Rate limited: `Retry-After` and `RateLimit-*` say when to come back",
    503: "Not available now (database unreachable, or a query past its time limit); retry after `Retry-After`",
}
_LITESTAR_400: Final = "Bad request syntax or unsupported method"
_PATH_PARAM: Final = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _public_operations(app: Litestar) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = _PATH_PARAM.sub(r"{\1}", route.path).rstrip("/") or "/"
        for handler in route.route_handlers:
            if isinstance(handler, HTTPRouteHandler) and handler.opt.get("public"):
                found.update((path, method.lower()) for method in handler.http_methods)
    return found


def _applicable(path: str, method: str, operation: dict[str, Any], public: bool) -> list[int]:
    statuses: set[int] = set()
    parameters = operation.get("parameters", [])
    if "requestBody" in operation:
        statuses |= {400, 413, 422}
    if any(p.get("in") in ("query", "path", "header") for p in parameters):
        statuses.add(422)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if not public:
        statuses |= {401, 403}
        if "requestBody" in operation:
            statuses.add(409)
    if path.startswith("/api/"):
        statuses |= {429, 503}
    if path == "/readyz":
        statuses.add(503)
    return sorted(statuses)


def _closed_objects(schema: Any) -> None:
    """``additionalProperties: false`` on every object with declared properties (free-form ones stay open)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _closed_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed_objects(value)


def _body_refs(operation: dict[str, Any]) -> set[str]:
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                refs.add(ref.rsplit("/", 1)[-1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(operation.get("requestBody"))
    return refs


def _parameter(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema")
    if not isinstance(schema, dict):
        return
    if parameter.get("in") == "query":
        items = schema.get("items") if schema.get("type") == "array" else schema
        if isinstance(items, dict) and items.get("type") == "string":
            items.setdefault("minLength", 1)
    if parameter.get("name") == "ip_address" and schema.get("type") == "string":
        schema.setdefault("anyOf", _IP_FORMATS)


def finalize(document: dict[str, Any], public: set[tuple[str, str]]) -> None:
    """Rewrite ``document`` (the OpenAPI dict) in place; see the module docstring."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    problem = {PROBLEM_JSON: {"schema": {"$ref": _REF}}}
    body_schemas: set[str] = set()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            is_public = (path.rstrip("/") or "/", method) in public
            if is_public:
                operation["security"] = []
            for parameter in operation.get("parameters", []):
                _parameter(parameter)
            if "requestBody" in operation:
                _closed_objects(operation["requestBody"])
                body_schemas |= _body_refs(operation)
            responses = operation["responses"]
            if responses.get("400", {}).get("description") == _LITESTAR_400 and "requestBody" not in operation:
                del responses["400"]  # Litestar's parameter errors, which answer 422 here
            for status in _applicable(path, method, operation, is_public):
                responses.setdefault(str(status), {"description": _GENERIC[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = problem
                    if response.get("description") == _LITESTAR_400:
                        response["description"] = _GENERIC[400]
    seen: set[str] = set()
    while body_schemas - seen:  # nested structs of request bodies too
        name = (body_schemas - seen).pop()
        seen.add(name)
        schema = components.get(name)
        _closed_objects(schema)
        body_schemas |= _body_refs({"requestBody": schema})


def finalize_openapi(app: Litestar) -> None:
    """Build the app's OpenAPI document now and make it true (it is served from this cached dict)."""
    from litestar._openapi.plugin import OpenAPIPlugin

    finalize(app.plugins.get(OpenAPIPlugin).provide_openapi_schema(), _public_operations(app))
