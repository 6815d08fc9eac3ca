"""The application factory: ``create_app(settings)`` and nothing else of substance."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from app.auth.middleware import AuthMiddleware
from app.dependencies import dependencies
from app.routes import route_handlers
from app.runtime import build_runtime
from app.settings import Settings, load_settings
from app.web.docs import swagger_render_plugin
from app.web.errors import exception_handlers
from app.web.observability import configure_logging
from app.web.openapi import finalize_openapi
from app.web.proxies import ForwardedClientMiddleware, parse_networks
from app.web.ratelimit import RateLimitMiddleware
from app.web.request_context import install_request_context
from app.web.validation import json_request_class, refuse_empty_parameters

__all__ = ["create_app", "create_app_from_env"]


def _proxy_middleware(settings: Settings) -> list[ForwardedClientMiddleware]:
    """Outermost, so everything after it sees the client behind trusted proxies; absent when none are set."""
    networks = parse_networks(settings.trusted_proxies)
    return [ForwardedClientMiddleware(networks)] if networks else []


def create_app(settings: Settings) -> Litestar:
    configure_logging(settings.log_level, json_lines=settings.log_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from app.lifecycle import start_services, stop_services

        runtime = await build_runtime(settings)
        app.state.runtime = runtime
        await start_services(runtime)
        # Everything built so far lives as long as the process: move it out of the collector's way, and
        # collect young objects less often, so full collections do not stall requests (tail latency).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        try:
            yield
        finally:
            await stop_services(runtime)
            await runtime.close()

    app = Litestar(
        route_handlers=route_handlers(),
        dependencies=dependencies,
        lifespan=[lifespan],
        middleware=[*_proxy_middleware(settings), AuthMiddleware(), RateLimitMiddleware()],
        exception_handlers=exception_handlers,
        openapi_config=OpenAPIConfig(
            title="Audit Log API",
            version="1.0.0",
            description=(
                "Multi-tenant audit log: ingest, search, export, stream and question audit events. "
                "Every path is also served with a trailing slash. Errors are RFC 9457 problem details "
                "(application/problem+json). One validation rule on every route: a body that is not JSON (or "
                "not UTF-8, or nested deeper than AUDIT_MAX_JSON_DEPTH levels) is 400; a field or parameter that "
                "breaks its rule is 422 with `errors` naming each (field, pointer, message); unknown body fields "
                "and empty query parameters are refused (422). Bodies are limited per route (413)."
            ),
            path="/schema",
            render_plugins=[swagger_render_plugin()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT or API key"),
                    "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
                }
            ),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
        request_max_body_size=settings.max_request_bytes,  # ingest routes set their own (app.logs.ingest_controller)
        request_class=json_request_class(settings.max_json_depth),
        before_request=refuse_empty_parameters,
        debug=False,
        logging_config=None,  # app.web.observability configures every logger; Litestar's would add a text format
    )
    finalize_openapi(app)
    # Outside the routing: router-level 404/405 carry X-Request-ID and get an access-log line too.
    return install_request_context(app, log_access=settings.access_log)


def create_app_from_env() -> Litestar:
    """Factory for Granian workers: settings come from the environment ``auditlog serve`` prepared."""
    return create_app(load_settings())
