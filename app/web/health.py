"""Liveness and readiness probes (no token needed)."""

from __future__ import annotations

import msgspec
from litestar import Request, get
from litestar.exceptions import HTTPException
from sqlalchemy import text

__all__ = ["healthz", "readyz"]


class Health(msgspec.Struct):
    status: str


@get("/healthz", opt={"public": True}, tags=["health"], summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@get("/readyz", opt={"public": True}, tags=["health"], summary="The database is reachable")
async def readyz(request: Request) -> Health:
    try:
        async with request.app.state.runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise HTTPException(status_code=503, detail="database unreachable") from exc
    return Health(status="ready")
