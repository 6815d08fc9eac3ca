"""Cross-cutting API behaviour: problem details, trailing slashes, docs, probes, request ids."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from app.auth.principal import Role
from tests.conftest import ApiClient

PROBLEM = "application/problem+json"


async def _operator(client: ApiClient) -> dict[str, str]:
    runtime = client.app.state.runtime
    async with runtime.db.system() as session:
        tid = (await session.execute(text("SELECT id FROM auditlog_find_tenant('platform')"))).scalar_one()
    token = runtime.tokens.issue(user_id=uuid.uuid4(), tenant_id=tid, role=Role.OPERATOR, session_id=uuid.uuid4())
    return {"Authorization": f"Bearer {token}"}


async def test_probes_and_docs(client: ApiClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    assert "/api/v1/tenants" in schema["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_errors_are_problem_details(client: ApiClient) -> None:
    missing = await client.get("/api/v1/nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    body = missing.json()
    assert {"status", "title", "detail"} <= body.keys() and body["status"] == 404

    anonymous = await client.get("/api/v1/tenants")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.headers["content-type"].startswith(PROBLEM)

    garbage = await client.get("/api/v1/tenants", headers={"Authorization": "Bearer not-a-token"})
    assert garbage.status_code == 401 and garbage.headers["www-authenticate"].startswith("Bearer")

    op = await _operator(client)
    malformed = await client.post(
        "/api/v1/tenants", content=b'{"name": ', headers={**op, "content-type": "application/json"}
    )
    assert malformed.status_code == 400, malformed.text
    assert malformed.headers["content-type"].startswith(PROBLEM)

    invalid = await client.post("/api/v1/tenants", json={"name": ""}, headers=op)
    assert invalid.status_code in (400, 422)
    assert "name" in invalid.json()["detail"]

    unknown_field = await client.post("/api/v1/tenants", json={"name": "ok", "evil": 1}, headers=op)
    assert unknown_field.status_code in (400, 422) and "evil" in unknown_field.text


async def test_trailing_slash_is_the_same_route_without_redirect(client: ApiClient) -> None:
    op = await _operator(client)
    for path in ("/api/v1/tenants", "/api/v1/tenants/"):
        response = await client.get(path, headers=op, follow_redirects=False)
        assert response.status_code == 200, (path, response.status_code)
    created = await client.post("/api/v1/tenants/", json={"name": "Slashy"}, headers=op, follow_redirects=False)
    assert created.status_code == 201
    dup = await client.post("/api/v1/tenants", json={"name": "slashy"}, headers=op)
    assert dup.status_code == 409 and dup.headers["content-type"].startswith(PROBLEM)


async def test_request_id_is_echoed_and_generated(client: ApiClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) >= 16
    problem = await client.get("/api/v1/tenants", headers={"X-Request-ID": "trace-1"})
    assert problem.json()["request_id"] == "trace-1"
