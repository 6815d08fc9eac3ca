"""Login, refresh rotation, logout (also across processes), forged tokens and account lockout."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import event as sa_event

from app.auth import throttle
from app.auth.tokens import SECRET_LENGTH
from app.auth_routes import service as auth_service
from tests.conftest import (
    OPERATOR_PASSWORD,
    ApiClient,
    Database,
    login,
    make_settings,
    make_tenant,
    running_app,
)

SECRET = "s" * 48  # the key of make_settings' "test1" kid
TOKEN = "/api/v1/auth/token"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _token(client: ApiClient, tenant: str, username: str, password: str) -> dict[str, Any]:
    response = await client.post(TOKEN, json={"tenant": tenant, "username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_login_returns_a_pair_and_the_jwt_carries_the_contract_claims(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    body = await _token(client, tenant.id, "admin", tenant.passwords["admin"])  # by id, not only by name
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"].startswith("rt_")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert {"sub", "tid", "role", "sid", "jti", "iat", "exp", "iss", "aud"} <= claims.keys()
    assert claims["tid"] == tenant.id and claims["role"] == "Admin"
    assert (await client.get("/api/v1/users", headers=_bearer(body["access_token"]))).status_code == 200


async def test_login_opens_a_session_and_stores_only_the_refresh_token_hash(
    client: ApiClient, database: Database
) -> None:
    body = await _token(client, "platform", "operator", OPERATOR_PASSWORD)
    sid = uuid.UUID(jwt.decode(body["access_token"], options={"verify_signature": False})["sid"])
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        session = await conn.fetchrow("SELECT expires_at > now() AS live, revoked_at FROM sessions WHERE id = $1", sid)
        tokens = await conn.fetch("SELECT * FROM refresh_tokens WHERE session_id = $1", sid)
    finally:
        await conn.close()
    assert session is not None and session["live"] and session["revoked_at"] is None
    assert len(tokens) == 1
    assert bytes(tokens[0]["token_hash"]) == hashlib.sha256(body["refresh_token"].encode()).digest()
    # rt_<tenant id hex>_<secret>: the secret itself may contain "_", so split off the first two parts only.
    prefix, tenant_hex, secret = body["refresh_token"].split("_", 2)
    assert prefix == "rt" and uuid.UUID(hex=tenant_hex) and len(secret) == SECRET_LENGTH
    assert all(secret not in str(value) for value in dict(tokens[0]).values())


async def test_failed_logins_are_indistinguishable(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    headers = {"X-Request-ID": "same-request-id"}
    attempts = [
        {"tenant": "no-such-tenant", "username": "admin", "password": tenant.passwords["admin"]},
        {"tenant": tenant.name, "username": "nobody", "password": tenant.passwords["admin"]},
        {"tenant": tenant.name, "username": "admin", "password": "wrong-password"},
    ]
    responses = []
    for body in attempts:
        started = time.perf_counter()
        response = await client.post(TOKEN, json=body, headers=headers)
        responses.append((response, time.perf_counter() - started))
    for response, _ in responses:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"].startswith("application/problem+json")
    assert len({r.content for r, _ in responses}) == 1, [r.text for r, _ in responses]
    durations = [d for _, d in responses]
    assert min(durations) > 0.005  # every path spends a password hash (argon2 takes tens of ms)


def _from(client: ApiClient, address: str) -> httpx.AsyncClient:
    """Another client of the same app whose requests come from ``address``."""
    app: Any = client.app  # httpx types its ASGI app more narrowly than Litestar declares __call__
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _owner_rows(database: Database, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database.dsn(database.owner_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_lockout_refuses_even_the_right_password_then_expires(
    client: ApiClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttle, "BASE_SECONDS", 1.5)
    tenant = await make_tenant(client)
    good = {"tenant": tenant.name, "username": "user", "password": tenant.passwords["user"]}
    bad = {**good, "password": "not-the-password"}
    headers = {"X-Request-ID": "lock"}
    wrong = await client.post(TOKEN, json=bad, headers=headers)
    assert wrong.status_code == 401, wrong.text
    for _ in range(throttle.PAIR_LIMIT - 1):
        again = await client.post(TOKEN, json=bad, headers=headers)
        assert again.status_code == 401, again.text
    locked = await client.post(TOKEN, json=good, headers=headers)
    assert locked.status_code == 401
    assert locked.content == wrong.content  # the lock is not revealed
    await asyncio.sleep(1.6)
    assert (await client.post(TOKEN, json=good)).status_code == 200
    rows = await _owner_rows(
        database,
        "SELECT account, source, failures FROM login_throttle WHERE tenant_id = $1 AND source <> '*' AND account <> '*'",
        uuid.UUID(tenant.id),
    )
    assert rows == []  # the success cleared its address's failures


async def test_lock_period_grows_after_each_further_failure(client: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "BASE_SECONDS", 1.0)
    tenant = await make_tenant(client)
    good = {"tenant": tenant.name, "username": "user", "password": tenant.passwords["user"]}
    bad = {**good, "password": "not-the-password"}
    for _ in range(throttle.PAIR_LIMIT):
        await client.post(TOKEN, json=bad)
    await asyncio.sleep(1.1)  # first lock (1 s) over; one more failure locks for 2 s
    failed_at = time.monotonic()
    assert (await client.post(TOKEN, json=bad)).status_code == 401
    await asyncio.sleep(max(0.0, 1.3 - (time.monotonic() - failed_at)))
    assert (await client.post(TOKEN, json=good)).status_code == 401  # still locked (doubled period)
    await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - failed_at)))
    assert (await client.post(TOKEN, json=good)).status_code == 200


async def test_concurrent_guesses_cannot_exceed_the_allowed_checks(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 F3: the lock state was read without a row lock; 12 wrong + the right password sent together
    got 200 with no lock, and of 40 concurrent wrong guesses 23 were checked."""
    tenant = await make_tenant(client)
    checked: list[str] = []
    real_verify = auth_service.verify_password

    def counting(hash: str, password: str) -> bool:
        checked.append(password)
        return real_verify(hash, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    good = {"tenant": tenant.name, "username": "user", "password": tenant.passwords["user"]}
    bodies = [{**good, "password": f"wrong-guess-{i}"} for i in range(12)] + [good]
    responses = await asyncio.gather(*(client.post(TOKEN, json=b) for b in bodies))
    assert len(checked) <= throttle.PAIR_LIMIT, checked
    if tenant.passwords["user"] not in checked:
        assert all(r.status_code == 401 for r in responses)

    checked.clear()
    other = {"tenant": tenant.name, "username": "auditor", "password": "x"}
    responses = await asyncio.gather(*(client.post(TOKEN, json={**other, "password": f"g-{i}"}) for i in range(40)))
    assert all(r.status_code == 401 for r in responses)
    assert len(checked) == throttle.PAIR_LIMIT, len(checked)


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 F3: any anonymous caller locked a tenant's admin out with 12 requests."""
    monkeypatch.setattr(throttle, "ACCOUNT_LIMIT", 12)
    tenant = await make_tenant(client)
    good = {"tenant": tenant.name, "username": "admin", "password": tenant.passwords["admin"]}
    attackers = [_from(client, f"203.0.113.{i}") for i in range(1, 5)]
    owner = _from(client, "198.51.100.7")
    try:
        for attacker in attackers:  # 4 addresses x 5 failures: every pair locked, the account lock set
            for i in range(throttle.PAIR_LIMIT + 3):
                assert (await attacker.post(TOKEN, json={**good, "password": f"guess-{i}"})).status_code == 401
        assert (await attackers[0].post(TOKEN, json=good)).status_code == 401  # locked for that address
        assert (await owner.post(TOKEN, json=good)).status_code == 200  # the owner's address has no failures
        assert (await owner.post(TOKEN, json=good)).status_code == 200
    finally:
        for c in (*attackers, owner):
            await c.aclose()


async def test_a_wrong_password_and_an_unknown_user_run_the_same_statements(client: ApiClient) -> None:
    """Issue 14 F7: a wrong password for a real user ran an extra UPDATE and commit (timing told which
    usernames exist). Compared by structure: the statements and commits of both paths."""
    tenant = await make_tenant(client)
    engine = client.app.state.runtime.engine.sync_engine
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    def on_commit(_conn: Any) -> None:
        seen.append("COMMIT")

    sa_event.listen(engine, "before_cursor_execute", on_execute)
    sa_event.listen(engine, "commit", on_commit)
    try:
        traces = []
        for username in ("user", "nobody-by-this-name"):
            seen.clear()
            body = {"tenant": tenant.name, "username": username, "password": "wrong-password-here"}
            assert (await client.post(TOKEN, json=body)).status_code == 401
            traces.append(list(seen))
    finally:
        sa_event.remove(engine, "before_cursor_execute", on_execute)
        sa_event.remove(engine, "commit", on_commit)
    assert traces[0] == traces[1]
    assert any("auditlog_login_reserve" in s for s in traces[0])


async def test_failed_authentications_are_limited_per_address(database: Database, tmp_path: Path) -> None:
    """Issue 14 F8: invalid tokens and keys were never limited (authentication runs before the limiter)."""
    async with running_app(make_settings(database, tmp_path, failed_auth_per_minute=5)) as client:
        good = await login(client, "platform", "operator", OPERATOR_PASSWORD)  # successes are not counted
        statuses = [
            (await client.get("/api/v1/tenants", headers=_bearer(f"not-a-token-{i}"))).status_code for i in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
        refused = await client.get("/api/v1/tenants", headers={"X-API-Key": "alk_" + "A" * 8 + "_" + "B" * 43})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"].startswith("application/problem+json")
        login_refused = await client.post(TOKEN, json={"tenant": "platform", "username": "operator", "password": "x"})
        assert login_refused.status_code == 429
        async with _from(client, "192.0.2.50") as elsewhere:  # another address is unaffected
            assert (await elsewhere.get("/api/v1/tenants", headers=good)).status_code == 200


async def test_auth_events_are_recorded_in_the_tenant_log(client: ApiClient, database: Database) -> None:
    tenant = await make_tenant(client)
    good = {"tenant": tenant.name, "username": "user", "password": tenant.passwords["user"]}
    pair = await _token(client, tenant.name, "user", tenant.passwords["user"])
    assert (await client.post(TOKEN, json={**good, "password": "wrong-password-1"})).status_code == 401
    assert (await client.post(TOKEN, json={**good, "username": "ghost", "password": "s3cret-typed"})).status_code == 401
    first = (await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401
    assert first["access_token"]
    other = await _token(client, tenant.name, "user", tenant.passwords["user"])
    assert (await client.post("/api/v1/auth/logout", headers=_bearer(other["access_token"]))).status_code == 204
    for i in range(throttle.PAIR_LIMIT):
        await client.post(TOKEN, json={**good, "username": "auditor", "password": f"bad-{i}"})
    assert (
        await client.post(TOKEN, json={"tenant": "no-such-tenant", "username": "x", "password": "y"})
    ).status_code == 401

    rows = await _owner_rows(
        database,
        "SELECT action, resource_type, resource_id, user_id FROM audit_logs WHERE tenant_id = $1"
        " AND resource_type LIKE 'auditlog.%' AND action IN"
        " ('LOGIN', 'LOGIN_FAILED', 'LOCKED_OUT', 'LOGOUT', 'SESSION_REVOKED') ORDER BY seq",
        uuid.UUID(tenant.id),
    )
    actions = [r["action"] for r in rows]
    user_id = jwt.decode(pair["access_token"], options={"verify_signature": False})["sub"]
    logins = [r for r in rows if r["action"] == "LOGIN" and r["user_id"] == user_id]
    assert len(logins) >= 2 and all(r["resource_type"] == "auditlog.session" for r in logins)
    failed = [r for r in rows if r["action"] == "LOGIN_FAILED"]
    assert {"user_id": user_id, "resource_id": user_id} in [
        {"user_id": r["user_id"], "resource_id": r["resource_id"]} for r in failed
    ]
    ghost = [r for r in failed if r["user_id"] == "anonymous"]
    assert len(ghost) == 1 and ghost[0]["resource_id"] is None
    assert "SESSION_REVOKED" in actions and "LOGOUT" in actions and "LOCKED_OUT" in actions
    everything = await _owner_rows(database, "SELECT * FROM audit_logs WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert not any("s3cret-typed" in str(v) or "ghost" in str(v) for r in everything for v in dict(r).values())


async def test_refresh_rotates_and_reuse_revokes_the_session(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    first = await _token(client, tenant.name, "admin", tenant.passwords["admin"])
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/v1/users", headers=_bearer(second["access_token"]))).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    newest = third.json()

    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert reuse.headers["www-authenticate"].startswith("Bearer")
    # The whole session is gone: its access tokens and its newest refresh token.
    for access in (first["access_token"], newest["access_token"]):
        assert (await client.get("/api/v1/users", headers=_bearer(access))).status_code == 401
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]})
    assert again.status_code == 401
    # Other sessions of the same user are untouched.
    assert (await client.get("/api/v1/users", headers=tenant.admin)).status_code == 200


async def test_expired_refresh_token_is_refused(database: Database, tmp_path: Path) -> None:
    async with running_app(make_settings(database, tmp_path, refresh_token_ttl_seconds=1)) as client:
        pair = await _token(client, "platform", "operator", OPERATOR_PASSWORD)
        await asyncio.sleep(1.2)
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert response.status_code == 401


@pytest.mark.parametrize(
    "token",
    ["garbage", "rt_" + "0" * 32 + "_" + "A" * 43, "rt_nothex_" + "A" * 43],
)
async def test_unknown_refresh_tokens_are_refused(client: ApiClient, token: str) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code == 401


async def test_refresh_and_login_reject_unknown_fields(client: ApiClient) -> None:
    response = await client.post(
        TOKEN, json={"tenant": "platform", "username": "operator", "password": OPERATOR_PASSWORD, "role": "Admin"}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["role"]


async def test_logout_revokes_every_token_of_the_session(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    pair = await _token(client, tenant.name, "auditor", tenant.passwords["auditor"])
    logout = await client.post("/api/v1/auth/logout", headers=_bearer(pair["access_token"]))
    assert logout.status_code == 204
    after = await client.post("/api/v1/auth/logout", headers=_bearer(pair["access_token"]))
    assert after.status_code == 401
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.post("/api/v1/auth/logout")).status_code == 401  # anonymous


async def test_logout_reaches_another_instance_within_a_second(database: Database, tmp_path: Path) -> None:
    async with (
        running_app(make_settings(database, tmp_path / "a")) as a,
        running_app(make_settings(database, tmp_path / "b")) as b,
    ):
        assert a.app is not b.app
        headers = await login(a, "platform", "operator", OPERATOR_PASSWORD)
        assert (await b.get("/api/v1/tenants", headers=headers)).status_code == 200
        assert (await a.post("/api/v1/auth/logout", headers=headers)).status_code == 204
        started = time.monotonic()
        status = 200
        while time.monotonic() - started < 1.0:
            status = (await b.get("/api/v1/tenants", headers=headers)).status_code
            if status == 401:
                break
            await asyncio.sleep(0.05)
        assert status == 401, "instance B still accepts a token logged out through A"


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


async def test_forged_tokens_are_refused(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    pair = await _token(client, tenant.name, "user", tenant.passwords["user"])
    good = pair["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())

    def signed(changes: dict[str, Any], *, key: str = SECRET, kid: str = "test1") -> str:
        return jwt.encode({**claims, **changes}, key, algorithm="HS256", headers={"kid": kid})

    header, _payload, signature = good.split(".")
    tampered_payload = _b64({**claims, "role": "Admin"})
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'test1'})}.{_b64(claims)}.",
        "alg none (pyjwt)": jwt.encode(claims, "", algorithm="none", headers={"kid": "test1"}),
        "wrong key": signed({}, key="x" * 48),
        "tampered claims": f"{header}.{tampered_payload}.{signature}",
        "wrong audience": signed({"aud": "someone-else"}),
        "wrong issuer": signed({"iss": "someone-else"}),
        "expired": signed({"iat": now - 4000, "nbf": now - 4000, "exp": now - 3000}),
        "unknown kid": signed({}, kid="nope"),
        "missing sid": jwt.encode(
            {k: v for k, v in claims.items() if k != "sid"}, SECRET, algorithm="HS256", headers={"kid": "test1"}
        ),
    }
    # The control: a correctly signed token with the same claims works, so each refusal is the forgery's.
    assert (await client.get("/api/v1/tenants/", headers=_bearer(signed({})))).status_code == 403
    for name, token in forged.items():
        response = await client.get("/api/v1/users", headers=_bearer(token))
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name

    assert (await client.post("/api/v1/auth/logout", headers=_bearer(good))).status_code == 204
    assert (await client.get("/api/v1/users", headers=_bearer(signed({})))).status_code == 401  # revoked sid
