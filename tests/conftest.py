"""Test fixtures: a real PostgreSQL, migrated once into a template, a fresh database per test.

The server is ``AUDIT_TEST_DATABASE_URL`` (a superuser DSN) when set, otherwise an embedded PostgreSQL
started in a temporary directory, so the suite needs nothing installed. Migrations (never
``create_all``) build the template; every test gets its own copy of it.

Parallel runs. ``./test`` (and so CI) runs the suite in several pytest-xdist worker processes (``-n auto``
in pyproject.toml; :func:`pytest_xdist_auto_num_workers` below picks how many, and runs in-process when
the arguments name only files, test ids or tests/unit; ``-n 0`` forces in-process, ``-n 4`` any count).
Each worker has its own embedded PostgreSQL (or, on ``AUDIT_TEST_DATABASE_URL``, its own template database; the
roles are cluster-wide and provisioned under an advisory lock). A test is safe in parallel when it:

- takes databases from the ``database`` fixture or :func:`create_database` (a name unique to the process:
  include ``os.getpid()``), never a fixed database name, and does not alter roles or server settings;
- takes every port from ``tests.servers.free_port()`` (a range of the worker's own), never a fixed port
  (``127.0.0.1:9``, where nothing listens, is fine for "unreachable");
- writes only under ``tmp_path`` / ``tmp_path_factory`` (or a ``tempfile.mkdtemp`` it removes), never a
  fixed path or the repository (``tests/artifacts`` only with names of its own);
- starts ``auditlog serve`` through ``tests.servers`` (``start_serve`` / ``serving``), stops every process
  it starts, and does not depend on another test having run before it or in the same process;
- bounds time relative to what it measures on the machine (other workers and engineers share two cores),
  not to wall-clock figures that only hold on an idle machine.

A module whose tests share a module- or class-scoped fixture (a server), or need no PostgreSQL, is kept
on one worker automatically (:func:`pytest_collection_modifyitems`); an explicit ``xdist_group`` mark
works too. Mark a test or module ``pytest.mark.slow`` when it
takes 10 s or more: slow ones are handed out first, so the run does not end waiting on one of them.
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
from db.embedded import EmbeddedPostgres
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


def worker_id() -> str:
    """``gw0``, ``gw1``, ... in a pytest-xdist worker; ``main`` in a run without workers."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _in_process(args: list[str]) -> bool:
    """The arguments name only files, test ids (``path.py``, ``path.py::test``) or the unit tests' folder."""
    paths = [arg.split("::", 1)[0].rstrip("/") for arg in args if not arg.startswith("-")]
    return bool(paths) and all(p.endswith(".py") or Path(p).resolve().is_relative_to(_UNIT) for p in paths)


_UNIT = Path(__file__).resolve().parent / "unit"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers ``-n auto`` means: none (in-process) for a run of named files or tests, or of the unit
    tests (milliseconds each: starting workers would cost more than it saves); otherwise
    twice the cores, at least 4: the tests spend much of their time waiting on PostgreSQL, servers they
    started and sleeps, so more workers than cores pay. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    if _in_process(list(config.args)):
        return 0
    return max(4, 2 * (os.cpu_count() or 1))


def _group_of(item: pytest.Item) -> str | None:
    """The work unit an item belongs to under ``--dist loadgroup``: its ``xdist_group`` marks if it has any;
    else its module when its tests share a module- or class-scoped fixture (set up once, not once per worker)
    or need no PostgreSQL (unit tests: milliseconds each, where sending tests one by one costs more than it
    gains); else none (sent on its own)."""
    marks = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if marks:
        return "_".join(marks)
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    shared = any(d.scope in ("module", "class") for fixturedefs in defs for d in fixturedefs)
    if shared or "pg_server" not in getattr(item, "fixturenames", ()):
        return item.nodeid.split("::", 1)[0].removeprefix("tests/").removesuffix(".py")
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hand out tests marked ``slow`` first; in an xdist worker under ``--dist loadgroup``, name each item's
    work unit (:func:`_group_of`) in its node id as ``<id>@<group>``, which is what the scheduler reads.

    xdist 3.8 does the latter itself for ``xdist_group`` marks by setting ``item._nodeid``, which pytest 9.2
    no longer reads (the id lives in ``item._id``), so it is done here for every pytest."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow ones first
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group = _group_of(item)
        if group is None or "@" in item.nodeid.rpartition("]")[2]:
            continue
        nodeid = f"{item.nodeid}@{group}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(nodeid)
        else:
            item._nodeid = nodeid


class _TestPostgres(EmbeddedPostgres):
    """The embedded server with settings for a test cluster, whose data is thrown away: nothing waits for a
    flush to disk (``fsync``, ``synchronous_commit``, ``full_page_writes`` off; a database per test is a
    ``CREATE DATABASE`` each). The product's embedded server keeps its own settings, and
    ``tests/integration/test_embedded*.py`` run that one."""

    @property
    def server_options(self) -> str:
        return super().server_options + " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("AUDIT_TEST_DATABASE_URL")
    if url:
        yield PgServer(admin_dsn=url)
        return
    root = Path(tempfile.mkdtemp(prefix=f"auditlog-test-{worker_id()}-"))
    server = _TestPostgres(root)
    server.start()
    try:
        yield PgServer(admin_dsn=server.url("postgres", "postgres", driver="postgresql"), embedded=server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def provision_locked(pg: PgServer, database: str) -> None:
    """``db.provision.provision`` under a cluster-wide advisory lock: the roles belong to the whole server,
    and two workers creating or altering them at once on a shared server would collide."""
    conn = await asyncpg.connect(pg.admin_dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('auditlog-test-provision'))")
        await provision(pg.admin_dsn, database)
    finally:
        await conn.close()  # ends the session, and its lock


async def drop_database(pg: PgServer, name: str) -> None:
    conn = await asyncpg.connect(pg.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    name = TEMPLATE if pg_server.embedded is not None else f"{TEMPLATE}_{worker_id()}"
    asyncio.run(drop_database(pg_server, name))
    asyncio.run(provision_locked(pg_server, name))
    migrate.upgrade(pg_server.url(OWNER_ROLE, name))
    return name


@dataclass
class Database:
    name: str
    api_url: str
    owner_url: str
    admin_dsn: str

    def dsn(self, url: str) -> str:
        from db.urls import plain_dsn

        return plain_dsn(url)


async def create_database(pg: PgServer, name: str, template: str) -> Database:
    """A fresh copy of ``template`` called ``name`` (replacing one a crashed run left behind)."""
    conn = await asyncpg.connect(pg.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{OWNER_ROLE}"')
    finally:
        await conn.close()
    return Database(
        name=name, api_url=pg.url(API_ROLE, name), owner_url=pg.url(OWNER_ROLE, name), admin_dsn=pg.admin_dsn
    )


@pytest.fixture
async def database(pg_server: PgServer, template_db: str) -> AsyncIterator[Database]:
    created = await create_database(pg_server, f"t_{os.getpid()}_{next(_counter)}", template_db)
    yield created
    await drop_database(pg_server, created.name)


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
