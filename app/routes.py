"""The route table: every controller and handler the API serves, in one list."""

from __future__ import annotations

from typing import Any

from litestar import Router

__all__ = ["route_handlers"]


def route_handlers() -> list[Any]:
    from app.alerts.controller import AlertController
    from app.api_keys.controller import ApiKeyController
    from app.auth_routes.controller import AuthController
    from app.chat.controller import ChatController
    from app.console.routes import console, root_redirect
    from app.export_schedules.controller import ExportScheduleController
    from app.exports.controller import export_logs
    from app.exports.jobs_controller import ExportJobController
    from app.logs.ingest_controller import LogIngestController
    from app.logs.pii_vault import LogPiiController
    from app.logs.query_controller import LogQueryController, list_logs
    from app.retention.controller import RetentionController, cleanup_logs
    from app.stats.controller import log_stats
    from app.stream.routes import logs_stream, logs_stream_sse
    from app.tenants.controller import TenantController
    from app.users.controller import UserController
    from app.verifiable.controller import CheckpointController, checkpoint_key, event_proof
    from app.web.docs import swagger_ui
    from app.web.health import healthz, readyz

    # Everything under /api/v1/logs goes through one Router: Litestar 2.25 refuses two top-level
    # controllers on one path ("Handler already registered ... OPTIONS"). ``list_logs`` must follow
    # LogIngestController (see its docstring).
    logs = Router(
        path="/",
        route_handlers=[
            LogIngestController,
            LogPiiController,
            LogQueryController,
            list_logs,
            logs_stream_sse,
            cleanup_logs,
            export_logs,
            log_stats,
            event_proof,
        ],
    )
    return [
        healthz,
        readyz,
        swagger_ui,
        AuthController,
        ApiKeyController,
        TenantController,
        RetentionController,
        UserController,
        ExportJobController,
        ExportScheduleController,
        logs,
        logs_stream,
        AlertController,
        ChatController,
        checkpoint_key,
        CheckpointController,
        console,
        root_redirect,
    ]
