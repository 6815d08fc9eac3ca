"""The route table: every controller and handler the API serves, in one list."""

from __future__ import annotations

from typing import Any

__all__ = ["route_handlers"]


def route_handlers() -> list[Any]:
    from litestar import Router

    from app.docs import swagger_ui
    from app.health import healthz, readyz
    from app.logs.ingest_controller import LogIngestController
    from app.logs.pii_vault import LogPiiController
    from app.tenants.controller import TenantController
    from app.users.controller import UserController

    handlers: list[Any] = [healthz, readyz, swagger_ui, TenantController, UserController]
    for module, name in (
        ("app.auth_routes.controller", "AuthController"),
        ("app.api_keys.controller", "ApiKeyController"),
    ):
        handlers.extend(_optional(module, name))
    # Controllers sharing the path /api/v1/logs must be registered through one Router: Litestar 2.25
    # refuses two top-level controllers on one path ("Handler already registered ... OPTIONS").
    log_handlers: list[Any] = [LogIngestController, LogPiiController]
    for module, name in (
        ("app.logs.controller", "LogController"),
        ("app.logs.query_controller", "LogQueryController"),
        ("app.logs.query_controller", "list_logs"),  # after LogIngestController: see its docstring
    ):
        log_handlers.extend(_optional(module, name))
    handlers.append(Router(path="/", route_handlers=log_handlers))
    return handlers


def _optional(module: str, name: str) -> list[Any]:
    import importlib

    try:
        return [getattr(importlib.import_module(module), name)]
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        return []
