"""Every route, every role: generated from the app's own route table, so a new route cannot slip through.

Each HTTP handler must be public (``opt={"public": True}``) or carry a ``RoleGuard``. For each guarded
route: anonymous → 401 with ``WWW-Authenticate: Bearer``; a role outside the guard → 403; an allowed role →
neither (path parameters are random UUIDs, so 404/400/422 are fine there).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute

from app.auth.principal import Role
from app.guards import RoleGuard
from tests.conftest import Database, make_settings, make_tenant, operator_headers, running_app

LITESTAR_OWN = ("/schema",)  # the OpenAPI controller Litestar mounts itself
STREAMS = ("/api/v1/logs/stream/sse",)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    template: str
    roles: frozenset[Role] | None
    """None: public."""


def _fill(route: HTTPRoute) -> str:
    path = route.path_format
    for name, definition in route.path_parameters.items():
        value = "1" if definition.type is int else str(uuid.uuid4())
        path = path.replace("{" + name + "}", value)
    return path


def endpoints(app: Litestar) -> list[Endpoint]:
    found: list[Endpoint] = []
    unguarded: list[str] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(LITESTAR_OWN):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method in {"HEAD", "OPTIONS"}:
                    continue
                guards = [
                    g for layer in handler.ownership_layers for g in (layer.guards or []) if isinstance(g, RoleGuard)
                ]
                public = bool(handler.opt.get("public"))
                if not public and not guards:
                    unguarded.append(f"{method} {route.path}")
                    continue
                roles = None if public else frozenset.intersection(*(g.roles for g in guards))
                found.append(Endpoint(method, _fill(route), route.path, roles))
    assert not unguarded, f"routes with neither a RoleGuard nor opt['public']: {unguarded}"
    # Logout ends the caller's session: run it last so the other calls keep their tokens.
    return sorted(found, key=lambda e: ("logout" in e.path, e.path, e.method))


def test_every_handler_is_public_or_guarded(tmp_path: Path) -> None:
    from app.asgi import create_app
    from app.settings import Environment, Settings

    app = create_app(Settings(env=Environment.test, data_dir=tmp_path, log_json=False, log_level="WARNING"))
    found = endpoints(app)
    templates = {(e.method, e.template) for e in found}
    for expected in [("POST", "/api/v1/auth/token"), ("POST", "/api/v1/api-keys"), ("GET", "/api/v1/users")]:
        assert expected in templates
    assert next(e for e in found if e.template == "/api/v1/auth/token").roles is None


async def test_route_by_role_matrix(database: Database, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, rate_limit_other_routes=100_000, rate_limit_log_routes=100_000)
    async with running_app(settings) as client:
        tenant = await make_tenant(client)
        callers: dict[str, tuple[Role | None, dict[str, str]]] = {
            "anonymous": (None, {}),
            "operator": (Role.OPERATOR, await operator_headers(client)),
            "Admin": (Role.ADMIN, tenant.admin),
            "User": (Role.USER, tenant.user),
            "Auditor": (Role.AUDITOR, tenant.auditor),
        }
        checked = 0
        failures: list[str] = []
        for endpoint in endpoints(client.app):
            if endpoint.roles is None:
                continue
            for name, (role, headers) in callers.items():
                kwargs: dict[str, Any] = {"headers": headers}
                if endpoint.method in {"POST", "PUT", "PATCH"}:
                    kwargs["json"] = {}
                if endpoint.template in STREAMS:
                    # an open stream never ends; a bad start position is refused after the guard (422), before
                    # anything is streamed, which is all the matrix needs to see
                    kwargs["params"] = {"after": "not-a-position"}
                response = await client.request(endpoint.method, endpoint.path, **kwargs)
                status = response.status_code
                where = f"{endpoint.method} {endpoint.template} as {name}: {status} {response.text[:120]}"
                if role is None:
                    ok = status == 401 and response.headers.get("www-authenticate", "").startswith("Bearer")
                elif role in endpoint.roles:
                    ok = status not in (401, 403) and status < 500
                else:
                    ok = status == 403
                if not ok:
                    failures.append(where)
                checked += 1
        assert not failures, "\n".join(failures)
        assert checked >= 5 * 6
