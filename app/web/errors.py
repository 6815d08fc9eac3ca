"""Problem details (RFC 9457) for every error the API returns.

Client errors name what is wrong; a 5xx says only that something failed and carries the request id, never
a stack trace or SQL. Database errors that are the client's fault (a duplicate, a value out of range) are
mapped to 4xx here, once, instead of in each handler.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from db.availability import database_unavailable

__all__ = ["NOT_JSON", "PROBLEM_JSON", "ApiError", "Conflict", "NotFound", "exception_handlers", "problem", "too_large"]

log = logging.getLogger("auditlog.errors")
PROBLEM_JSON = "application/problem+json"
NOT_JSON = "the body is not valid JSON (UTF-8)"
"""The one message for a body that is not JSON, on every route."""

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiError(HTTPException):
    """An error with a status, a human ``detail`` and optional structured ``errors``."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.errors = errors


def too_large(limit: int | None) -> ApiError:
    """The one ``413`` of every route: the body is over the route's limit."""
    return ApiError(413, f"the body is larger than {limit} bytes, the most this route accepts")


class NotFound(ApiError):
    def __init__(self, what: str = "resource") -> None:
        super().__init__(404, f"{what} not found")


class Conflict(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


def problem(
    status: int,
    detail: str,
    *,
    request: Request[Any, Any, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        rid = request.scope.get("state", {}).get("request_id")
        if rid:
            body["request_id"] = rid
    if errors:
        body["errors"] = errors
    hdrs = dict(headers or {})
    if status == 401:
        hdrs.setdefault("WWW-Authenticate", "Bearer")
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=hdrs)


def _validation_errors(extra: Any) -> list[dict[str, Any]]:
    """Litestar's parameter errors (``{"key", "message", "source"}``) as problem ``errors``."""
    errors: list[dict[str, Any]] = []
    for item in extra if isinstance(extra, list) else [extra]:
        if isinstance(item, dict):
            error = {"field": item.get("key") or item.get("field") or "body", "message": item.get("message")}
            if item.get("source"):
                error["in"] = str(item["source"])
            errors.append(error)
        elif item is not None:
            errors.append({"field": "body", "message": str(item)})
    return errors


def _handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """400 for a body that is not JSON (one message); 422 naming every bad parameter or field otherwise.

    Struct bodies are validated by ``app.web.validation`` before Litestar converts them, so an error Litestar
    reports about the body as a whole (``data``) means it had no JSON to read: an empty body.
    """
    errors = _validation_errors(exc.extra)
    if not errors or any(e.get("in") == "body" and e["field"] == "data" for e in errors):
        return problem(400, NOT_JSON, request=request)
    named = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, named, request=request, errors=errors)


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, ApiError):
        return problem(status, exc.detail, request=request, errors=exc.errors, headers=headers)
    if isinstance(exc, ValidationException):
        return _handle_validation(request, exc)
    if isinstance(exc, NotAuthorizedException):
        return problem(401, exc.detail or "authentication required", request=request, headers=headers)
    if isinstance(exc, RequestEntityTooLarge):
        return _handle_http(request, too_large(request.route_handler.resolve_request_max_body_size()))
    if status >= 500:
        return problem(status, "internal error", request=request)
    return problem(status, exc.detail or _TITLES.get(status, "error"), request=request, headers=headers)


def _sqlstate(exc: Exception) -> str:
    """The PostgreSQL error code behind ``exc`` (SQLAlchemy-wrapped or raw asyncpg), or ``""``."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return str(getattr(exc.orig, "sqlstate", None) or "")
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")
    return ""


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    code = _sqlstate(exc)
    if code == "23505":
        return problem(409, "a resource with these unique fields already exists", request=request)
    if code.startswith("22") or code in {"23502", "23514"}:
        return problem(422, "a value was out of range or malformed", request=request)
    if code == "57014":  # query_canceled: the read pool's statement_timeout (or an operator's cancel)
        log.warning("statement cancelled on %s %s (statement timeout or cancel)", request.method, request.url.path)
        return problem(
            503,
            "the query took longer than the server allows; narrow the time window or the filters, or retry later",
            request=request,
            headers={"Retry-After": "5"},
        )
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
        return problem(503, "the database is unavailable; retry shortly", request=request, headers={"Retry-After": "5"})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal error", request=request)


exception_handlers: dict[Any, Any] = {HTTPException: _handle_http, Exception: _handle_unexpected}
