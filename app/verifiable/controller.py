"""The verifiable-log routes (API.md "The verifiable log"): the checkpoint verifier key, the latest checkpoint,
inclusion and consistency proofs. Tenant-scoped (the caller's tenant, any reader role), audited reads (``VIEW``),
answered from the tiles and checkpoints only: a proof never needs the events themselves.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from app.auth.principal import Principal
from app.dependencies import runtime_of
from app.guards import READERS, principal_of
from app.read_audit import record_request_read
from app.runtime import Runtime
from app.verifiable import service
from app.verifiable.keys import CheckpointKeys, checkpoint_keys
from app.verifiable.schemas import CheckpointOut, ConsistencyOut, InclusionOut
from app.web.errors import ApiError

__all__ = ["CheckpointController", "checkpoint_key", "event_proof", "keys_of"]

TAGS = ["verifiable log"]
_AUTH = {
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Role may not read events"),
}


def keys_of(runtime: Runtime) -> CheckpointKeys:
    try:
        return checkpoint_keys(runtime.settings)
    except ValueError as exc:  # unset or malformed AUDIT_CHECKPOINT_SIGNING_KEYS: a configuration fault
        raise ApiError(503, f"checkpoint keys unavailable: {exc}") from None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _audit(request: Request[Any, Any, Any], runtime: Runtime, principal: Principal, route: str, details: dict[str, Any],
           resource_id: str | None = None) -> None:  # fmt: skip
    record_request_read(request, runtime, principal, "VIEW", route, details, resource_id=resource_id)


@get(
    "/.well-known/auditlog/checkpoint-key",
    opt={"public": True},
    tags=TAGS,
    media_type="text/plain",
    summary="The checkpoint verifier keys (no token)",
    description=(
        "The C2SP note verifier keys that sign checkpoints, `<name>+<key hash, 8 hex>+<base64 of 0x01 ‖ 32-byte "
        "Ed25519 public key>`, one a line, newest first: after a rotation the old keys stay listed, so old "
        "checkpoints keep verifying."
    ),
    responses={503: ResponseSpec(None, description="`AUDIT_CHECKPOINT_SIGNING_KEYS` is unset or malformed")},
)
async def checkpoint_key(request: Request[Any, Any, Any]) -> str:
    return keys_of(runtime_of(request)).published()


TreeSize = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        required=False,
        description="A checkpointed tree size (default: the latest checkpoint's); it must include the event.",
    ),
]
FromSize = Annotated[
    int | None, QueryParameter(name="from", ge=1, required=True, description="The older tree size (at least 1).")
]
ToSize = Annotated[
    int | None,
    QueryParameter(ge=1, required=True, description="The newer tree size: at least `from`, at most the latest."),
]


@get(
    "/api/v1/logs/{event_id:uuid}/proof",
    guards=[READERS],
    tags=["logs", *TAGS],
    summary="Inclusion proof of one event",
    description=(
        "The RFC 6962 inclusion proof of the event (leaf `seq - 1` of the caller's tenant's tree) in the tree "
        "of `tree_size` leaves, with that size's signed checkpoint. An audited read."
    ),
    responses={
        **_AUTH,
        404: ResponseSpec(
            None,
            description="No such event in the caller's tenant, the event is not integrated yet (within about a "
            "second of its commit), or no checkpoint was signed at `tree_size`",
        ),
        422: ResponseSpec(None, description="`tree_size` is not an integer ≥ 1, or does not include the event"),
    },
)
async def event_proof(
    request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID], tree_size: TreeSize = None
) -> InclusionOut:
    runtime = runtime_of(request)
    principal = principal_of(request)
    tenant_id = principal.tenant_id
    async with runtime.db.read(tenant_id) as pg:
        seq = await pg.fetchval("SELECT seq FROM audit_logs WHERE tenant_id = $1 AND id = $2", tenant_id, event_id)
        if seq is None:
            raise ApiError(404, "no such event")
        index = int(seq) - 1
        if tree_size is None:
            checkpoint = await service.latest_checkpoint(pg, tenant_id)
            if checkpoint is None or checkpoint.tree_size <= index:
                raise ApiError(404, "the event is not integrated in a signed checkpoint yet")
        else:
            if tree_size <= index:
                raise ApiError(
                    422,
                    "tree_size does not include the event",
                    errors=[{"field": "tree_size", "message": f"must be greater than the event's leaf index {index}"}],
                )
            checkpoint = await service.checkpoint_at(pg, tenant_id, tree_size)
            if checkpoint is None:
                raise ApiError(404, f"no checkpoint was signed at tree size {tree_size}")
        leaf, hashes = await service.inclusion(pg, tenant_id, index, checkpoint.tree_size)
    _audit(request, runtime, principal, "/api/v1/logs/{id}/proof", {"tree_size": checkpoint.tree_size},
           resource_id=str(event_id))  # fmt: skip
    return InclusionOut(
        leaf_index=index,
        tree_size=checkpoint.tree_size,
        leaf_hash=_b64(leaf),
        hashes=[_b64(h) for h in hashes],
        checkpoint=checkpoint.note,
    )


class CheckpointController(Controller):
    path = "/api/v1/checkpoints"
    tags = TAGS
    guards = [READERS]

    @get(
        "/latest",
        summary="The latest signed checkpoint of the caller's tenant",
        description=(
            "The tree size, root hash and C2SP signed checkpoint (origin `<AUDIT_CHECKPOINT_ORIGIN>/<tenant id>`). "
            "A new one is signed within about a second of new events. An audited read."
        ),
        responses={**_AUTH, 404: ResponseSpec(None, description="No checkpoint yet (the tenant has no events)")},
    )
    async def latest(self, request: Request[Any, Any, Any]) -> CheckpointOut:
        runtime = runtime_of(request)
        principal = principal_of(request)
        async with runtime.db.read(principal.tenant_id) as pg:
            checkpoint = await service.latest_checkpoint(pg, principal.tenant_id)
        if checkpoint is None:
            raise ApiError(404, "no checkpoint yet")
        _audit(request, runtime, principal, "/api/v1/checkpoints/latest", {"tree_size": checkpoint.tree_size})
        return CheckpointOut(
            tree_size=checkpoint.tree_size, root_hash=_b64(checkpoint.root_hash), checkpoint=checkpoint.note
        )

    @get(
        "/consistency",
        summary="Consistency proof between two tree sizes",
        description=(
            "The RFC 6962 consistency proof that the caller's tenant's tree of `to` leaves extends the tree of "
            "`from` leaves (empty when they are equal). An audited read."
        ),
        responses={
            **_AUTH,
            422: ResponseSpec(
                None, description="`from`/`to` missing, not integers ≥ 1, `from` > `to`, or `to` beyond the tree"
            ),
        },
    )
    async def consistency(
        self, request: Request[Any, Any, Any], from_: FromSize = None, to: ToSize = None
    ) -> ConsistencyOut:
        runtime = runtime_of(request)
        principal = principal_of(request)
        missing = [{"field": name, "message": "is required"} for name, v in (("from", from_), ("to", to)) if v is None]
        if missing:
            raise ApiError(422, "from and to are required", errors=missing)
        assert from_ is not None and to is not None
        if from_ > to:
            raise ApiError(422, "from must not exceed to", errors=[{"field": "from", "message": "must be ≤ to"}])
        async with runtime.db.read(principal.tenant_id) as pg:
            size = await service.tree_size(pg, principal.tenant_id)
            if to > size:
                raise ApiError(
                    422,
                    "to is beyond the tree",
                    errors=[{"field": "to", "message": f"must be at most the integrated tree size {size}"}],
                )
            hashes = await service.consistency(pg, principal.tenant_id, from_, to)
        _audit(request, runtime, principal, "/api/v1/checkpoints/consistency", {"from": from_, "to": to})
        return ConsistencyOut(from_=from_, to=to, hashes=[_b64(h) for h in hashes])
