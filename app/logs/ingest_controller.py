"""Write routes of the audit log: POST /api/v1/logs and POST /api/v1/logs/bulk (Admin, User).

Bodies are read here with a size cap (a single event over 64 KiB is refused from its Content-Length before
the body is read, and on the bytes actually read when there is none) and decoded with prebuilt msgspec
decoders; ``prepare`` validates and masks; the group-commit writer stores; the 201 is sent only after the
COMMIT. Because the handlers take the raw request, the OpenAPI request bodies are attached by small
``Operation`` subclasses generated from the msgspec types, so /schema/openapi.json documents them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Operation

from app.dependencies import runtime_of
from app.guards import WRITERS, principal_of
from app.logs.idempotency import HEADER, Claim, parse_key, replay
from app.logs.ingest import IngestWriter, WriterUnavailable
from app.logs.prepare import FieldError, PreparedEvent, prepare_bulk, prepare_client_event, request_hash
from app.logs.schemas import BulkResult, EventIn, EventOut
from app.runtime import Runtime
from app.web.errors import ApiError, too_large
from app.web.responses import EncodedJSON

__all__ = ["MAX_BULK_ITEMS", "LogIngestController", "read_capped"]

MAX_BULK_ITEMS = 10_000
_JSON = "application/json"


async def read_capped(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _writer(runtime: Runtime) -> IngestWriter:
    writer = runtime.services.get("ingest")
    if not isinstance(writer, IngestWriter):
        raise ApiError(503, "ingest is not available", headers={"Retry-After": "1"})
    return writer


async def _store(
    runtime: Runtime, tenant_id: Any, events: list[PreparedEvent], claim: Claim | None, body: bytes
) -> Response[Any]:
    try:
        outcome = await _writer(runtime).submit(tenant_id, events, claim)
    except WriterUnavailable:
        raise ApiError(503, "the events could not be stored; retry", headers={"Retry-After": "1"}) from None
    if outcome.replay is not None and claim is not None:
        return replay(claim, outcome.replay)
    return EncodedJSON(body, status_code=201)


def _claim(
    request: Request[Any, Any, Any], caller: uuid.UUID, route: str, body: bytes, response: bytes
) -> Claim | None:
    """The Idempotency-Key claim of this request, scoped to its caller (user or API key), if it has a key."""
    key = parse_key(request.headers.get(HEADER))
    return Claim(caller, key, request_hash(route, body), response) if key else None


# -- OpenAPI: the request bodies the handlers decode themselves ---------------------------------------
def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _inline(defs[ref.rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _event_schema() -> dict[str, Any]:
    (ref,), defs = msgspec.json.schema_components([EventIn], ref_template="#/$defs/{name}")
    return cast(dict[str, Any], _inline(ref, defs))


_EVENT_SCHEMA = _event_schema()
_BULK_SCHEMA = {
    "oneOf": [
        {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1, "maxItems": MAX_BULK_ITEMS},
        {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1, "maxItems": MAX_BULK_ITEMS}
            },
            "additionalProperties": False,
        },
    ]
}
_IDEMPOTENCY_PARAM = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Per tenant and caller (user or API key), 24 h: a repeat by the same caller returns the first "
        "result (same status and body, header Idempotent-Replayed: true) and stores nothing new. The same "
        "key with a different body → 409. Another caller's identical key is another request: it is stored "
        "and answered on its own."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _operation(schema: dict[str, Any], description: str) -> type[Operation]:
    class _WithBody(Operation):
        def to_schema(self) -> dict[str, Any]:
            out = super().to_schema()
            out["requestBody"] = {
                "required": True,
                "description": description,
                "content": {_JSON: {"schema": schema}},
            }
            out.setdefault("parameters", []).append(_IDEMPOTENCY_PARAM)
            return out

    return _WithBody


_PROBLEMS = {
    400: ResponseSpec(None, description="Malformed JSON or a bad Idempotency-Key (problem details)"),
    409: ResponseSpec(None, description="Idempotency-Key reused with a different body"),
    413: ResponseSpec(None, description="Body too large (a single event over 64 KiB)"),
    422: ResponseSpec(None, description="A field breaks its rule; errors name the field (and bulk index)"),
    503: ResponseSpec(None, description="Could not be stored now; nothing was written; retry"),
}


class LogIngestController(Controller):
    path = "/api/v1/logs"
    tags = ["logs"]

    @post(
        "/",
        guards=[WRITERS],
        status_code=201,
        summary="Record one audit event",
        description=(
            "Validates, masks secrets and PII, encrypts metadata and states at rest, and answers 201 with "
            "the stored event once it is committed."
        ),
        operation_class=_operation(_EVENT_SCHEMA, "One audit event (max 64 KiB)."),
        responses=_PROBLEMS,
        request_max_body_size=None,  # read_capped enforces AUDIT_MAX_EVENT_BYTES / AUDIT_MAX_BULK_BYTES
    )
    async def create(self, request: Request[Any, Any, Any]) -> Response[EventOut]:
        runtime = runtime_of(request)
        principal = principal_of(request)
        settings = runtime.settings
        body = await read_capped(request, settings.max_event_bytes)
        try:
            event = prepare_client_event(
                body,
                tenant_id=principal.tenant_id,
                actor=principal.actor,
                now=datetime.now(UTC),
                max_depth=settings.max_json_depth,
            )
        except FieldError as exc:
            raise exc.problem() from None
        response = msgspec.json.encode(event.out)
        claim = _claim(request, principal.subject_id, "POST /logs", body, response)
        return await _store(runtime, principal.tenant_id, [event], claim, response)

    @post(
        "/bulk",
        guards=[WRITERS],
        status_code=201,
        summary="Record up to 10,000 audit events atomically",
        description=(
            'A JSON array of events, or {"items": [...]}. All or nothing: one invalid item → 422 naming its '
            "index (errors[].index) and nothing is stored. 201 {inserted, ids} with ids in input order."
        ),
        operation_class=_operation(_BULK_SCHEMA, "1-10,000 events, each at most 64 KiB."),
        responses=_PROBLEMS,
        request_max_body_size=None,  # read_capped enforces AUDIT_MAX_EVENT_BYTES / AUDIT_MAX_BULK_BYTES
    )
    async def bulk(self, request: Request[Any, Any, Any]) -> Response[BulkResult]:
        runtime = runtime_of(request)
        principal = principal_of(request)
        settings = runtime.settings
        body = await read_capped(request, settings.max_bulk_bytes)
        try:
            events = prepare_bulk(
                body,
                tenant_id=principal.tenant_id,
                actor=principal.actor,
                now=datetime.now(UTC),
                max_items=MAX_BULK_ITEMS,
                max_item_bytes=settings.max_event_bytes,
                max_depth=settings.max_json_depth,
            )
        except FieldError as exc:
            raise exc.problem() from None
        response = msgspec.json.encode(BulkResult(inserted=len(events), ids=[e.out.id for e in events]))
        claim = _claim(request, principal.subject_id, "POST /logs/bulk", body, response)
        return await _store(runtime, principal.tenant_id, events, claim, response)
