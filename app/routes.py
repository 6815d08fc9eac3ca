"""The route table: every controller and handler the API serves, in one list."""

from __future__ import annotations

from typing import Any

__all__ = ["route_handlers"]


def route_handlers() -> list[Any]:
    from app.docs import swagger_ui
    from app.health import healthz, readyz
    from app.logs.ingest_controller import LogIngestController
    from app.logs.pii_vault import LogPiiController
    from app.tenants.controller import TenantController
    from app.users.controller import UserController

    handlers: list[Any] = [
        healthz,
        readyz,
        swagger_ui,
        TenantController,
        UserController,
        LogIngestController,
        LogPiiController,
    ]
    for module, name in (
        ("app.auth_routes.controller", "AuthController"),
        ("app.api_keys.controller", "ApiKeyController"),
        ("app.logs.controller", "LogController"),
        ("app.logs.query_controller", "LogQueryController"),
    ):
        handlers.extend(_optional(module, name))
    return handlers


def _optional(module: str, name: str) -> list[Any]:
    import importlib

    try:
        return [getattr(importlib.import_module(module), name)]
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        return []
