"""Tenant A's credentials on tenant B's objects: 404 on every route with an id in its path, never 403/200.

The routes come from the app's route table. For each kind of object there is a maker that creates one in
tenant B through the public API; a route whose object has no maker is probed with a random id (and listed
in the failure message if it answers anything but 404), so a new route is covered the day it appears.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.auth.principal import Role
from app.verifiable.integrator import integrate_tenant
from app.verifiable.keys import checkpoint_keys
from tests.conftest import ApiClient, Database, TenantFixture, make_settings, make_tenant, running_app
from tests.integration.test_route_matrix import Endpoint, endpoints

Maker = Callable[[ApiClient, TenantFixture], Awaitable[str]]


async def _created(response: Any, field: str) -> str:
    assert response.status_code in (200, 201, 202), response.text
    return str(response.json()[field])


async def _tenant(client: ApiClient, b: TenantFixture) -> str:
    return b.id


async def _api_key(client: ApiClient, b: TenantFixture) -> str:
    return await _created(
        await client.post("/api/v1/api-keys", json={"name": "b", "role": "User"}, headers=b.admin), "id"
    )


async def _event(client: ApiClient, b: TenantFixture) -> str:
    body = {"action": "CREATE", "resource_type": "doc", "message": "tenant B's secret event"}
    event_id = await _created(await client.post("/api/v1/logs", json=body, headers=b.user), "id")
    runtime = client.app.state.runtime  # in B's signed tree too, so B reaches its proof (the worker is off here)
    await integrate_tenant(runtime.db, uuid.UUID(b.id), checkpoint_keys(runtime.settings))
    return event_id


async def _export(client: ApiClient, b: TenantFixture) -> str:
    return await _created(
        await client.post("/api/v1/exports", json={"format": "csv", "filters": {}}, headers=b.admin), "id"
    )


async def _conversation(client: ApiClient, b: TenantFixture) -> str:
    return await _created(
        await client.post("/api/v1/chat", json={"question": "how many events are there?"}, headers=b.admin),
        "conversation_id",
    )


async def _alert(client: ApiClient, b: TenantFixture) -> str:
    body = {"name": "b's alert", "webhook_url": "http://127.0.0.1:9/hook"}  # private URLs allowed below
    return await _created(await client.post("/api/v1/alerts", json=body, headers=b.admin), "id")


async def _export_schedule(client: ApiClient, b: TenantFixture) -> str:
    body = {"name": "b's schedule", "every": "hour", "format": "ndjson",
            "destination": {"type": "http", "url": "http://127.0.0.1:9/collect"}}  # fmt: skip
    return await _created(await client.post("/api/v1/export-schedules", json=body, headers=b.admin), "id")


async def _user(client: ApiClient, b: TenantFixture) -> str:
    listed = await client.get("/api/v1/users", headers=b.admin)
    assert listed.status_code == 200, listed.text
    return str(next(u["id"] for u in listed.json() if u["username"] == "user"))


# The collection path a parameter belongs to → how to make one of its objects in tenant B.
MAKERS: dict[str, Maker] = {
    "/api/v1/tenants": _tenant,
    "/api/v1/api-keys": _api_key,
    "/api/v1/logs": _event,
    "/api/v1/exports": _export,
    "/api/v1/chat": _conversation,
    "/api/v1/users": _user,
    "/api/v1/alerts": _alert,
    "/api/v1/export-schedules": _export_schedule,
}
# Valid bodies, so that a 404 is not pre-empted by a 400/422.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/tenants/{}/users"): {"username": "intruder", "password": "intruder-pass-1", "role": "User"},
    ("PUT", "/api/v1/tenants/{}/retention"): {"days": 30},
    ("PATCH", "/api/v1/users/{}"): {"role": "Admin"},
    ("POST", "/api/v1/users/{}/password"): {"new_password": "taken-over-password-1"},
    ("PATCH", "/api/v1/alerts/{}"): {"threshold": 5},
    ("PATCH", "/api/v1/export-schedules/{}"): {"name": "taken over"},
}
_PARAM = re.compile(r"\{[^}]+\}")


def _caller(endpoint: Endpoint, tenant: TenantFixture) -> dict[str, str] | None:
    assert endpoint.roles is not None
    for role, headers in ((Role.ADMIN, tenant.admin), (Role.USER, tenant.user), (Role.AUDITOR, tenant.auditor)):
        if role in endpoint.roles:
            return headers
    return None  # operator-only: the operator spans tenants by design


async def test_other_tenants_objects_are_not_found(database: Database, tmp_path: Path) -> None:
    settings = make_settings(
        database, tmp_path, rate_limit_other_routes=100_000, rate_limit_log_routes=100_000, allow_private_urls=True
    )
    async with running_app(settings) as client:
        a = await make_tenant(client)
        b = await make_tenant(client)
        made: dict[str, str] = {}
        failures: list[str] = []
        probed = 0
        for endpoint in endpoints(client.app):
            params = _PARAM.findall(endpoint.template)
            if endpoint.roles is None or not params:
                continue
            caller = _caller(endpoint, a)
            if caller is None:
                continue
            assert len(params) == 1, f"extend this test for several ids: {endpoint.template}"
            collection = endpoint.template.split("/{", 1)[0]
            generic = _PARAM.sub("{}", endpoint.template)
            maker = MAKERS.get(collection)
            if maker is None:
                failures.append(f"no maker for {collection} (route {endpoint.method} {endpoint.template})")
                continue
            if collection not in made:
                made[collection] = await maker(client, b)
            path = _PARAM.sub(made[collection], endpoint.template)
            kwargs: dict[str, Any] = {"headers": caller}
            if endpoint.method in {"POST", "PUT", "PATCH"}:
                kwargs["json"] = BODIES.get((endpoint.method, generic), {})
            response = await client.request(endpoint.method, path, **kwargs)
            expected = (
                {404}
                if endpoint.method in {"GET", "DELETE"} or (endpoint.method, generic) in BODIES
                else {404, 400, 422}
            )
            if response.status_code not in expected:
                failures.append(f"{endpoint.method} {endpoint.template}: {response.status_code} {response.text[:200]}")
            if endpoint.method == "GET":  # the control: B itself reaches the object
                own = _caller(endpoint, b)
                assert own is not None
                mine = await client.get(path, headers=own)
                if mine.status_code == 404:
                    failures.append(f"control failed, B cannot see its own object: GET {endpoint.template}")
            probed += 1
        assert not failures, "\n".join(failures)
        assert probed >= 2  # at least POST /tenants/{id}/users and DELETE /api-keys/{id}
        # Nothing was created in B by A's attempts.
        users = (await client.get("/api/v1/users", headers=b.admin)).json()
        assert "intruder" not in {u["username"] for u in users}
