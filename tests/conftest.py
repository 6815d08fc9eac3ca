"""Test fixtures: a real PostgreSQL, migrated once into a template, a fresh database per test.

The server is ``AUDIT_TEST_DATABASE_URL`` (a superuser DSN) when set, otherwise an embedded PostgreSQL
started in a temporary directory, so the suite needs nothing installed. Migrations (never
``create_all``) build the template; every test gets its own copy of it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from app.asgi import create_app
from app.settings import Environment, Settings
from db import migrate
from db.provision import API_ROLE, OWNER_ROLE, provision

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

TEMPLATE = "auditlog_test_template"
OPERATOR_PASSWORD = "operator-password-for-tests"
_counter = itertools.count()


@dataclass
class PgServer:
    """A PostgreSQL server the tests may administer."""

    admin_dsn: str  # superuser, database postgres
    embedded: Any = None

    def url(self, user: str, database: str, driver: str = "postgresql+asyncpg") -> str:
        if self.embedded is not None:
            return str(self.embedded.url(user, database, driver=driver))
        _, _, rest = self.admin_dsn.partition("://")
        hostpart = rest.split("@", 1)[-1]
        host = hostpart.split("/", 1)[0]
        query = rest.split("?", 1)[1] if "?" in rest else ""
        return f"{driver}://{user}@{host}/{database}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("AUDIT_TEST_DATABASE_URL")
    if url:
        yield PgServer(admin_dsn=url)
        return
    from db.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="auditlog-test-"))
    server = EmbeddedPostgres(root)
    server.start()
    try:
        yield PgServer(admin_dsn=server.url("postgres", "postgres", driver="postgresql"), embedded=server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    async def drop() -> None:
        conn = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())
    asyncio.run(provision(pg_server.admin_dsn, TEMPLATE))
    migrate.upgrade(pg_server.url(OWNER_ROLE, TEMPLATE))
    return TEMPLATE


@dataclass
class Database:
    name: str
    api_url: str
    owner_url: str
    admin_dsn: str

    def dsn(self, url: str) -> str:
        from db.urls import plain_dsn

        return plain_dsn(url)


@pytest.fixture
async def database(pg_server: PgServer, template_db: str) -> AsyncIterator[Database]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" OWNER "{OWNER_ROLE}"')
    finally:
        await conn.close()
    yield Database(
        name=name,
        api_url=pg_server.url(API_ROLE, name),
        owner_url=pg_server.url(OWNER_ROLE, name),
        admin_dsn=pg_server.admin_dsn,
    )
    conn = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def make_settings(database: Database, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.test,
        "database_url": database.api_url,
        "migration_database_url": database.owner_url,
        "data_dir": tmp_path,
        "master_key": base64.urlsafe_b64encode(b"m" * 32).decode(),
        "jwt_signing_keys": "test1:" + "s" * 48,
        "operator_password": OPERATOR_PASSWORD,
        "checkpoint_signing_keys": "PRIVATE+KEY+auditlog.example+77eac839+AWNjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj",
        "demo_data": False,
        "run_worker_in_process": False,
        "log_json": False,
        "log_level": "WARNING",
        # Generous budgets so functional tests never meet the limiter; test_rate_limits sets its own.
        "rate_limit_log_routes": 1_000_000,
        "rate_limit_other_routes": 1_000_000,
        "failed_auth_per_minute": 1_000_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


class ApiClient(httpx.AsyncClient):
    """An HTTP client wired to one app instance in the test's own event loop (``client.app``)."""

    def __init__(self, app: Litestar) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self.app = app


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[ApiClient]:
    """Start an app (lifespan included) and bootstrap its data; yield a client for it."""
    from app.bootstrap import bootstrap

    app = create_app(settings)
    started, stopping = asyncio.Event(), asyncio.Event()

    async def serve() -> None:  # the lifespan's cancel scope must enter and exit in one task
        async with app.lifespan():
            started.set()
            await stopping.wait()

    task = asyncio.create_task(serve())
    await asyncio.wait({task, asyncio.create_task(started.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        async with ApiClient(app) as client:
            await bootstrap(app.state.runtime)
            yield client
    finally:
        stopping.set()
        await task


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[ApiClient]:
    async with running_app(settings) as client:
        yield client


async def login(client: ApiClient, tenant: str, username: str, password: str) -> dict[str, str]:
    """Authorization header for a user (via the real token route)."""
    response = await client.post(
        "/api/v1/auth/token", json={"tenant": tenant, "username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@dataclass
class TenantFixture:
    id: str
    name: str
    admin: dict[str, str]
    user: dict[str, str]
    auditor: dict[str, str]
    passwords: dict[str, str]


async def operator_headers(client: ApiClient) -> dict[str, str]:
    return await login(client, "platform", "operator", OPERATOR_PASSWORD)


async def make_tenant(client: ApiClient, name: str | None = None) -> TenantFixture:
    """A tenant with an Admin, a User and an Auditor, each logged in."""
    op = await operator_headers(client)
    name = name or f"tenant-{secrets.token_hex(4)}"
    created = await client.post("/api/v1/tenants", json={"name": name}, headers=op)
    assert created.status_code == 201, created.text
    tid = created.json()["id"]
    headers: dict[str, dict[str, str]] = {}
    passwords: dict[str, str] = {}
    for username, role in (("admin", "Admin"), ("user", "User"), ("auditor", "Auditor")):
        passwords[username] = f"{username}-password-{secrets.token_hex(4)}"
        made = await client.post(
            f"/api/v1/tenants/{tid}/users",
            json={
                "username": username,
                "password": passwords[username],
                "role": role,
                "email": f"{username}@{name}.example.com",
            },
            headers=op,
        )
        assert made.status_code == 201, made.text
        headers[username] = await login(client, name, username, passwords[username])
    return TenantFixture(tid, name, headers["admin"], headers["user"], headers["auditor"], passwords)
