"""One validation rule on every route (issue 15 F2, F6, F7, F9; issue 14 F9; issue 13 section 4).

The table-driven tests walk every operation of the served OpenAPI document that takes a JSON body, so a
route added later is held to the same rule without touching this file.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from app.web.errors import NOT_JSON, PROBLEM_JSON
from tests.conftest import ApiClient, TenantFixture, make_tenant, operator_headers

INGEST = {"/api/v1/logs", "/api/v1/logs/bulk"}


@dataclass
class Operation:
    method: str
    path: str
    public: bool


@dataclass
class World:
    client: ApiClient
    tenant: TenantFixture
    operator: dict[str, str]


@pytest.fixture
async def world(client: ApiClient) -> World:
    return World(client, await make_tenant(client), await operator_headers(client))


async def _body_operations(client: ApiClient) -> list[Operation]:
    document = (await client.get("/schema/openapi.json")).json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                found.append(Operation(method.upper(), path, operation.get("security") == []))
    assert len(found) >= 7, found  # token, refresh, tenants, users, api-keys, logs, bulk at least
    return found


def _url(world: World, path: str) -> str:
    path = path.replace("{tenant_id}", world.tenant.id)
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def _send(world: World, op: Operation, body: bytes) -> Any:
    """Send ``body`` with the first identity the route lets through to its body (public, Admin, operator)."""
    identities = [{}] if op.public else [world.tenant.admin, world.operator]
    response = None
    for headers in identities:
        response = await world.client.request(
            op.method, _url(world, op.path), content=body, headers={**headers, "content-type": "application/json"}
        )
        if response.status_code not in (401, 403):
            break
    assert response is not None
    return response


def _deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


async def test_every_json_route_answers_400_for_a_body_that_is_not_json(world: World) -> None:
    for op in await _body_operations(world.client):
        for body in (b'{"tenant": "\xff\xfe"}', b"\xc3\x28", b'{"a":', b"", _deep(1000)):
            response = await _send(world, op, body)
            assert response.status_code == 400, (op, body[:20], response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            problem = response.json()
            assert problem["status"] == 400
            if body == _deep(1000):
                assert "nested deeper than 32 levels" in problem["detail"], (op, problem)
            else:
                assert problem["detail"] == NOT_JSON, (op, problem)


async def test_every_json_route_refuses_unknown_fields_naming_them(world: World) -> None:
    for op in await _body_operations(world.client):
        body = (
            b'[{"zz_unknown": 1, "zz_other": 2}]' if op.path.endswith("/bulk") else b'{"zz_unknown": 1, "zz_other": 2}'
        )
        response = await _send(world, op, body)
        assert response.status_code == 422, (op, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        errors = response.json()["errors"]
        named = {e["field"] for e in errors}
        assert {"zz_unknown", "zz_other"} <= named, (op, errors)
        for error in errors:
            assert error["message"] and error["pointer"].startswith("/"), (op, error)


async def test_every_json_route_but_ingest_refuses_bodies_over_16_kib(world: World) -> None:
    padding = "x" * (16 * 1024)
    for op in await _body_operations(world.client):
        if op.path in INGEST:
            continue
        response = await _send(world, op, f'{{"name": "{padding}"}}'.encode())
        assert response.status_code == 413, (op, response.text)
        assert response.json()["detail"] == "the body is larger than 16384 bytes, the most this route accepts"


async def test_a_large_body_on_the_anonymous_token_route_is_413(client: ApiClient) -> None:
    body = b'{"tenant": "' + b"a" * 1_000_000 + b'", "username": "u", "password": "p"}'
    response = await client.post("/api/v1/auth/token", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_the_body_nesting_cap_is_32_levels(world: World) -> None:
    def event(depth: int) -> bytes:  # the event object is level 1, metadata's object level 2, and so on
        return b'{"action": "CREATE", "resource_type": "doc", "metadata": ' + _deep(depth - 1) + b"}"

    ok = await world.client.post("/api/v1/logs", content=event(32), headers=world.tenant.user)
    assert ok.status_code == 201, ok.text
    deep = await world.client.post("/api/v1/logs", content=event(33), headers=world.tenant.user)
    assert deep.status_code == 400, deep.text
    bulk = await world.client.post("/api/v1/logs/bulk", content=b"[" + event(33) + b"]", headers=world.tenant.user)
    assert bulk.status_code == 400, bulk.text
    in_bulk = await world.client.post("/api/v1/logs/bulk", content=b"[" + event(32) + b"]", headers=world.tenant.user)
    assert in_bulk.status_code == 201, "an event accepted alone is accepted in a bulk"


async def test_field_errors_are_422_naming_every_bad_field(world: World) -> None:
    response = await world.client.post(
        "/api/v1/api-keys", json={"name": "", "role": "Root"}, headers=world.tenant.admin
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"name", "role"}
    response = await world.client.post(
        "/api/v1/logs",
        json={"action": "lower", "resource_type": "", "severity": "LOUD", "ip_address": "999.1.1.1"},
        headers=world.tenant.user,
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} >= {"action", "resource_type", "severity"}
    response = await world.client.post(
        "/api/v1/logs",
        json={"action": "CREATE", "resource_type": "doc", "timestamp": "1900-01-01T00:00:00Z", "ip_address": "x"},
        headers=world.tenant.user,
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"timestamp", "ip_address"}


async def test_a_bulk_reports_every_bad_item_with_its_index_and_field(world: World) -> None:
    items: list[dict[str, Any]] = [{"action": "CREATE", "resource_type": "doc"} for _ in range(50)]
    items[17]["ip_address"] = "not-an-ip"
    items[40]["severity"] = "LOUD"
    response = await world.client.post("/api/v1/logs/bulk", json=items, headers=world.tenant.user)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["index"], e["field"], e["pointer"]) for e in errors] == [
        (17, "ip_address", "/17/ip_address"),
        (40, "severity", "/40/severity"),
    ]
    wrapped = await world.client.post("/api/v1/logs/bulk", json={"items": items}, headers=world.tenant.user)
    assert [e["pointer"] for e in wrapped.json()["errors"]] == ["/items/17/ip_address", "/items/40/severity"]
    listed = await world.client.get("/api/v1/logs", headers=world.tenant.auditor)
    assert listed.json()["items"] == [], "nothing of a refused bulk may be stored"


async def test_a_bulk_lists_at_most_100_errors_and_counts_the_rest(world: World) -> None:
    items = [{"action": "CREATE", "resource_type": "doc", "severity": "LOUD"} for _ in range(150)]
    response = await world.client.post("/api/v1/logs/bulk", json=items, headers=world.tenant.user)
    assert response.status_code == 422
    problem = response.json()
    assert [e["index"] for e in problem["errors"]] == list(range(100))
    assert problem["detail"].endswith("; and 145 more")


async def test_ipv4_mapped_addresses_come_back_as_given(world: World) -> None:
    response = await world.client.post(
        "/api/v1/logs",
        json={"action": "LOGIN", "resource_type": "session", "ip_address": "::FFFF:1.2.3.4"},
        headers=world.tenant.user,
    )
    assert response.status_code == 201, response.text
    assert response.json()["ip_address"] == "::ffff:1.2.3.4"
    stored = await world.client.get(f"/api/v1/logs/{response.json()['id']}", headers=world.tenant.auditor)
    assert stored.json()["ip_address"] == "::ffff:1.2.3.4"


async def test_timestamps_before_2000_are_refused(world: World) -> None:
    for stamp, status in (("1900-01-01T00:00:00Z", 422), ("1999-12-31T23:59:59Z", 422), ("2000-01-01T00:00:00Z", 201)):
        response = await world.client.post(
            "/api/v1/logs",
            json={"action": "CREATE", "resource_type": "doc", "timestamp": stamp},
            headers=world.tenant.user,
        )
        assert response.status_code == status, (stamp, response.text)


async def test_clients_cannot_post_reserved_resource_types(world: World) -> None:
    for reserved in ("audit_log", "auditlog.user", "AuditLog.Tenant", "auditlog.anything"):
        single = await world.client.post(
            "/api/v1/logs", json={"action": "CREATE", "resource_type": reserved}, headers=world.tenant.user
        )
        assert single.status_code == 422, (reserved, single.text)
        assert single.json()["errors"] == [
            {"field": "resource_type", "pointer": "/resource_type", "message": single.json()["errors"][0]["message"]}
        ]
        bulk = await world.client.post(
            "/api/v1/logs/bulk",
            json=[{"action": "CREATE", "resource_type": "doc"}, {"action": "CREATE", "resource_type": reserved}],
            headers=world.tenant.user,
        )
        assert bulk.status_code == 422 and bulk.json()["errors"][0]["index"] == 1
    allowed = await world.client.post(
        "/api/v1/logs", json={"action": "CREATE", "resource_type": "audit_log_export"}, headers=world.tenant.user
    )
    assert allowed.status_code == 201


async def test_the_ignored_event_fields_are_still_accepted(world: World) -> None:
    response = await world.client.post(
        "/api/v1/logs",
        json={
            "action": "CREATE",
            "resource_type": "doc",
            "id": "x",
            "tenant_id": str(uuid.uuid4()),
            "received_at": "yesterday",
        },
        headers=world.tenant.user,
    )
    assert response.status_code == 201, response.text
    assert response.json()["tenant_id"] == world.tenant.id


async def test_empty_query_parameters_are_refused(world: World) -> None:
    response = await world.client.get("/api/v1/logs?start_time=&q=", headers=world.tenant.auditor)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"start_time", "q"}


async def test_the_openapi_document_tells_the_truth_about_errors(client: ApiClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    public = {("/healthz", "get"), ("/readyz", "get"), ("/api/v1/auth/token", "post"), ("/api/v1/auth/refresh", "post")}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"] == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            if (path, method) in public:
                assert operation["security"] == [], path
            elif path.startswith("/api/"):
                assert {"401", "403", "429", "503"} <= set(responses), (path, method)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(responses), (path, method)
    schemas = document["components"]["schemas"]
    for name in ("TokenRequest", "RefreshRequest", "TenantCreate", "UserCreate", "ApiKeyCreate"):
        assert schemas[name]["additionalProperties"] is False, name
    event = document["paths"]["/api/v1/logs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert event["additionalProperties"] is False
    ip = event["properties"]["ip_address"]["anyOf"][0]
    assert ip["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}]
    start = next(p for p in document["paths"]["/api/v1/logs"]["get"]["parameters"] if p["name"] == "start_time")
    assert start["schema"]["minLength"] == 1
