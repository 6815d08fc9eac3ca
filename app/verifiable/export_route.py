"""The ``proofs=true`` branch of ``GET /api/v1/logs/export`` (``app.exports.controller`` hands over to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.response import Stream

from app.dependencies import runtime_of
from app.guards import principal_of
from app.read_audit import get_recorder
from app.verifiable.export import export_lines
from app.verifiable.service import latest_checkpoint
from app.web.errors import ApiError

__all__ = ["export_with_proofs", "wants_proofs"]

_ALLOWED = {"format", "proofs"}


def wants_proofs(params: Mapping[str, Sequence[str]], errors: list[dict[str, Any]]) -> bool:
    values = [v for v in params.get("proofs", ()) if v != ""]
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "false", "1", "0"):
        errors.append({"field": "proofs", "message": "must be given once: true or false"})
        return False
    return values[0].lower() in ("true", "1")


async def export_with_proofs(request: Request[Any, Any, Any], params: Mapping[str, Sequence[str]], fmt: str) -> Stream:
    errors: list[dict[str, Any]] = []
    if fmt != "ndjson":
        errors.append({"field": "format", "message": "proofs=true needs format=ndjson"})
    errors.extend(
        {"field": name, "message": "proofs=true exports the whole log: no filters"}
        for name in sorted(set(params) - _ALLOWED)
    )
    if errors:
        raise ApiError(422, "invalid query parameters: " + ", ".join(e["field"] for e in errors), errors=errors)
    runtime = runtime_of(request)
    principal = principal_of(request)
    tenant_id = principal.tenant_id
    async with runtime.db.read(tenant_id) as pg:
        checkpoint = await latest_checkpoint(pg, tenant_id)
    if checkpoint is None:
        raise ApiError(404, "no checkpoint yet: the tenant's log has no integrated events")
    client = request.client
    sent = {"bytes": 0, "complete": False}

    async def body() -> AsyncIterator[bytes]:
        try:
            async with runtime.db.read(tenant_id) as pg:
                keyring = await runtime.keyrings.get(pg, tenant_id)
                async for chunk in export_lines(pg, tenant_id, keyring, checkpoint):
                    sent["bytes"] += len(chunk)
                    yield chunk
            sent["complete"] = True
        finally:
            details = {"format": "ndjson", "proofs": True, "tree_size": checkpoint.tree_size, **sent}
            get_recorder(runtime).record_read(
                principal,
                "EXPORT",
                "/api/v1/logs/export",
                details,
                request_id=request.scope.get("state", {}).get("request_id"),
                ip_address=client.host if client else None,
                user_agent=request.headers.get("user-agent"),
            )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Stream(
        body(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="auditlog-export-{stamp}-proofs.ndjson"',
            "Cache-Control": "no-store",
        },
    )
