"""The web console in a real browser (headless Debian Chromium driven by Playwright) against a real
``auditlog serve`` process with its job worker: sign in, the live tail (an event posted through the API shows
within 2 s; pause and resume lose nothing), search with filters and full text, the event's diff, the stats
charts' totals, exports (now and as a job), the analyst chat's SQL, the verify view, the admin pages, an
Auditor without write controls, the token refreshed before it expires, and logout ending the session.

One server and one browser for the module; the tests run in file order and share the signed-in Admin page.
Screenshots of every page go to ``tests/artifacts`` (or ``$AUDIT_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
import uuid
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.parquet as pq
import pytest

from db.provision import API_ROLE, OWNER_ROLE
from tests.browser import CHROMIUM_ARGS, artifacts_dir, chromium_executable
from tests.conftest import PgServer, TenantFixture, make_tenant
from tests.servers import Server, serving

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

TTL_SECONDS = 15  # short access tokens, so the console must refresh one while the module runs
RUN = uuid.uuid4().hex[:8]
DAY = datetime(2025, 7, 3, tzinfo=UTC)  # the chat's window: events placed on known days


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end in a thread of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def server(pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    dbname = f"console_{os.getpid()}"

    async def create() -> None:
        conn = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template_db}" OWNER "{OWNER_ROLE}"')
        finally:
            await conn.close()

    run_async(create())
    with serving(
        pg_server.url(API_ROLE, dbname),
        pg_server.url(OWNER_ROLE, dbname),
        tmp_path_factory.mktemp("console"),
        AUDIT_RUN_WORKER_IN_PROCESS="true",  # the console's export jobs and checkpoints need the worker
        AUDIT_CHECKPOINT_SIGNING_KEYS="PRIVATE+KEY+auditlog.example+77eac839+AWNjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj",
        AUDIT_CHECKPOINT_INTERVAL_SECONDS="0.2",
        AUDIT_ACCESS_TOKEN_TTL_SECONDS=str(TTL_SECONDS),
        AUDIT_ALLOW_PRIVATE_URLS="true",
    ) as started:
        yield started


@pytest.fixture(scope="module")
def tenant(server: Server) -> TenantFixture:
    async def make() -> TenantFixture:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await make_tenant(client)  # type: ignore[arg-type]

    result: TenantFixture = run_async(make())
    return result


class _SignedIn(httpx.Auth):
    """The User's bearer token, signed in again when it has expired: tokens live ``TTL_SECONDS`` here, and the
    module runs for longer than that (minutes on a loaded machine)."""

    requires_response_body = True

    def __init__(self, tenant: TenantFixture) -> None:
        self.tenant = tenant
        self.header = tenant.user["Authorization"]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header
        response = yield request
        if response.status_code == 401:
            body = {"tenant": self.tenant.name, "username": "user", "password": self.tenant.passwords["user"]}
            login = yield httpx.Request("POST", request.url.join("/api/v1/auth/token"), json=body)
            assert login.status_code == 200, login.text
            self.header = request.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            yield request


@pytest.fixture(scope="module")
def api(server: Server, tenant: TenantFixture) -> Iterator[httpx.Client]:
    """The tenant's User, through the public API (how events get in)."""
    with httpx.Client(base_url=server.url, auth=_SignedIn(tenant), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1366, "height": 860}, accept_downloads=True)
    context.set_default_timeout(10_000)
    return context


@pytest.fixture(scope="module")
def errors() -> list[str]:
    return []


@pytest.fixture(scope="module")
def page(browser: Browser, server: Server, errors: list[str]) -> Iterator[Page]:
    """The Admin's tab, signed in by the first test."""
    context = _context(browser)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield tab
    context.close()


def shot(tab: Page, name: str) -> None:
    tab.screenshot(path=str(artifacts_dir() / f"console-{name}.png"), full_page=False)


def sign_in(tab: Page, server: Server, tenant: str, username: str, password: str) -> None:
    tab.goto(f"{server.url}/")
    expect(tab).to_have_url(f"{server.url}/console/")
    tab.get_by_label("Tenant").fill(tenant)
    tab.get_by_label("Username").fill(username)
    tab.get_by_label("Password").fill(password)
    tab.get_by_role("button", name="Sign in").click()
    expect(tab.get_by_role("navigation", name="Main")).to_contain_text("Live tail")


def token_of(tab: Page) -> str | None:
    raw = tab.evaluate("sessionStorage.getItem('auditlog.console.session')")
    if not raw:
        return None
    import json

    return str(json.loads(raw)["access_token"])


def post(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"action": "UPDATE", "resource_type": "document", **fields}
    response = api.post("/api/v1/logs", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def goto(tab: Page, route: str) -> None:
    """Open a console page afresh (the same page again is rendered anew, its form empty)."""
    tab.evaluate(
        """(hash) => {
            if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
            else location.hash = hash;
        }""",
        f"#/{route}",
    )


# ---------------------------------------------------------------------------------------------------------------


def test_sign_in(page: Page, server: Server, tenant: TenantFixture, errors: list[str]) -> None:
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Tenant").fill(tenant.name)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong tenant, username or password.")
    shot(page, "signin")
    sign_in(page, server, tenant.name, "admin", tenant.passwords["admin"])
    expect(page.get_by_test_id("role")).to_have_text("(Admin)")
    nav = page.get_by_role("navigation", name="Main")
    for item in [
        "Live tail",
        "Search",
        "Stats",
        "Exports",
        "Analyst chat",
        "Verify",
        "Users",
        "API keys",
        "Retention",
        "Alerts",
    ]:
        expect(nav.get_by_role("link", name=item)).to_be_visible()
    assert token_of(page)
    assert not script_errors(errors), errors


def script_errors(errors: list[str]) -> list[str]:
    """Script errors, leaving out the browser's notes on answers that were not 2xx (the 401 above)."""
    return [e for e in errors if "Failed to load resource" not in e]


def test_live_tail_shows_a_posted_event_within_two_seconds_and_resumes_after_a_pause(
    page: Page, api: httpx.Client
) -> None:
    goto(page, "tail")
    expect(page.get_by_test_id("tail-status")).to_contain_text("Live")
    marker = f"tail-{RUN}"
    started = time.monotonic()
    post(api, message=f"{marker} first", severity="WARNING")
    expect(page.locator("tbody tr", has_text=f"{marker} first")).to_be_visible(timeout=2_000)
    assert time.monotonic() - started < 2.0

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("tail-status")).to_contain_text("Paused at position")
    missed = [post(api, message=f"{marker} while paused {i}") for i in range(3)]
    page.wait_for_timeout(500)
    expect(page.locator("tbody tr", has_text=f"{marker} while paused")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("tbody tr", has_text=f"{marker} while paused")).to_have_count(3)
    rows = page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert rows[:3] == [e["id"] for e in reversed(missed)]  # newest first, each once
    assert len(rows) == len(set(rows))
    post(api, message=f"{marker} after resume")
    expect(page.locator("tbody tr", has_text=f"{marker} after resume")).to_be_visible(timeout=2_000)
    shot(page, "tail")


def test_search_filters_and_full_text_find_the_event(page: Page, api: httpx.Client) -> None:
    word = f"needle{RUN}"
    target = post(
        api,
        action="PERMISSION_CHANGED",
        resource_type="project",
        resource_id="p-42",
        severity="ERROR",
        message=f"role changed for {word}",
        before_state={"role": "viewer", "owner": "ann", "removed": True},
        after_state={"role": "editor", "owner": "ann", "added": 1},
        metadata={"ticket": "SEC-9", "reason": "review"},
    )
    post(api, action="PERMISSION_CHANGED", resource_type="project", message="another one", severity="INFO")
    goto(page, "search")
    form = page.get_by_role("form", name="Filters")
    form.get_by_label("Full text").fill(word)
    form.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-event-id", target["id"])

    form.get_by_label("Full text").fill("")
    form.get_by_label("Action").fill("PERMISSION_CHANGED")
    form.get_by_label("ERROR").check()
    form.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-event-id", target["id"])
    form.get_by_label("ERROR").uncheck()
    form.get_by_label("CRITICAL").check()
    form.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("search-status")).to_contain_text("0 events")
    form.get_by_label("CRITICAL").uncheck()
    form.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2)
    shot(page, "search")


def test_keyset_paging(page: Page, api: httpx.Client) -> None:
    kind = f"paged-{RUN}"
    ids = [post(api, resource_type=kind, message=f"page item {i}")["id"] for i in range(30)]
    goto(page, "search")
    form = page.get_by_role("form", name="Filters")
    form.get_by_label("Resource type").fill(kind)
    form.get_by_label("Page size").select_option("25")
    form.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(25)
    first = rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(5)
    second = rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert first + second == list(reversed(ids))
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(25)


def test_detail_view_shows_the_diff_and_metadata(page: Page) -> None:
    goto(page, "search")
    form = page.get_by_role("form", name="Filters")
    form.get_by_label("Full text").fill(f"needle{RUN}")
    form.get_by_role("button", name="Search").click()
    page.locator("tbody tr a").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Event PERMISSION_CHANGED on project")
    diff = page.get_by_role("table", name="Before and after")
    expect(diff.locator("tr", has_text="role")).to_contain_text('"viewer"')
    expect(diff.locator("tr", has_text="role")).to_contain_text('"editor"')
    expect(diff.locator("tr", has_text="role")).to_contain_text("changed")
    expect(diff.locator("tr", has_text="owner")).to_contain_text("unchanged")
    expect(diff.locator("tr", has_text="removed")).to_contain_text("removed")
    expect(diff.locator("tr", has_text="added")).to_contain_text("added")
    expect(page.locator("section", has_text="Metadata")).to_contain_text("SEC-9")
    expect(page.locator("dd[data-field=resource_id]")).to_have_text("p-42")
    shot(page, "event")


def _oracle(api: httpx.Client, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every event GET /logs lists for ``params`` (all pages)."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        response = api.get("/api/v1/logs", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        out.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return out


def test_stats_chart_totals(page: Page, api: httpx.Client) -> None:
    goto(page, "stats")
    status = page.get_by_test_id("stats-status")
    expect(status).to_contain_text("events from")
    assert page.get_by_label("From", exact=True).input_value() and page.get_by_label("To", exact=True).input_value()
    total = int(status.get_attribute("data-total") or -1)
    chart = page.get_by_test_id("chart-time").locator("svg")
    start, end = (datetime.fromisoformat(status.get_attribute(f"data-{b}") or "") for b in ("start", "end"))
    assert timedelta(hours=23, minutes=59) < end - start <= timedelta(hours=24)  # the window asked for
    events = [e for e in _oracle(api, {}) if start <= datetime.fromisoformat(e["timestamp"]) <= end]
    assert total == len(events) > 0
    assert int(chart.get_attribute("data-total") or -1) == total
    per_severity = Counter(e["severity"] for e in events)
    for severity, expected in per_severity.items():
        drawn = chart.locator(f"rect.bar-{severity}").evaluate_all("rs => rs.reduce((n, r) => n + +r.dataset.count, 0)")
        assert drawn == expected, (severity, drawn, expected)
    per_action = Counter(e["action"] for e in events)
    bars = page.get_by_test_id("chart-actions").locator("rect")
    drawn_actions = dict(bars.evaluate_all("rs => rs.map(r => [r.dataset.name, +r.dataset.count])"))
    assert drawn_actions == dict(per_action.most_common(10)) or all(
        per_action[name] == n for name, n in drawn_actions.items()
    )
    users = page.get_by_test_id("chart-users").locator("rect")
    drawn_users = dict(users.evaluate_all("rs => rs.map(r => [r.dataset.name, +r.dataset.count])"))
    per_user = Counter(e["user_id"] for e in events if e["user_id"])
    assert drawn_users and all(per_user[name] == n for name, n in drawn_users.items())
    resources = page.get_by_test_id("chart-resources").locator("rect")
    drawn_resources = dict(resources.evaluate_all("rs => rs.map(r => [r.dataset.name, +r.dataset.count])"))
    per_resource = Counter(e["resource_type"] for e in events)
    assert drawn_resources and all(per_resource[name] == n for name, n in drawn_resources.items())
    shot(page, "stats")


def test_export_downloads_the_filtered_rows(page: Page, api: httpx.Client) -> None:
    kind = f"paged-{RUN}"
    expected = {e["id"] for e in _oracle(api, {"resource_type": kind})}
    assert len(expected) == 30
    goto(page, "search")
    form = page.get_by_role("form", name="Filters")
    form.get_by_label("Resource type").fill(kind)
    form.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(30)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    download = download_info.value
    text = Path(download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["id"] for r in rows} == expected
    assert {r["resource_type"] for r in rows} == {kind}
    assert download.suggested_filename.endswith(".csv")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download PARQUET").click()
    table = pq.read_table(download_info.value.path())
    assert set(table.column("id").to_pylist()) == expected


def test_export_job_shows_progress_and_downloads(page: Page) -> None:
    kind = f"paged-{RUN}"
    goto(page, "exports")
    form = page.get_by_role("form", name="Filters")
    form.get_by_label("Resource type").fill(kind)
    form.get_by_label("Format").select_option("csv")
    page.get_by_role("button", name="Start export job").click()
    jobs = page.get_by_test_id("jobs")
    expect(jobs.locator("tbody tr").first).to_contain_text("done, 30 rows", timeout=20_000)
    shot(page, "exports")
    with page.expect_download() as download_info:
        jobs.get_by_role("button", name="Download").first.click()
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert len(rows) == 30 and {r["resource_type"] for r in rows} == {kind}


def test_chat_answers_and_shows_its_sql(page: Page, api: httpx.Client) -> None:
    events = [
        post(api, action="LOGIN_FAILED", severity="ERROR", message="bad password",
             timestamp=(DAY + timedelta(hours=h)).isoformat())
        for h in (1, 5, 9)
    ]  # fmt: skip
    post(api, action="LOGIN", severity="INFO", timestamp=(DAY + timedelta(hours=2)).isoformat())
    goto(page, "chat")
    page.get_by_label("Question").fill("Show all ERROR logs between 2025-07-03 and 2025-07-04")
    page.get_by_role("button", name="Ask").click()
    answer = page.get_by_test_id("answer").last
    expect(answer).to_contain_text("Found 3 ERROR events")
    sql = answer.get_by_test_id("sql")
    expect(sql).to_contain_text("SELECT")
    expect(sql).to_contain_text("ERROR")
    table = answer.get_by_test_id("rows")
    headers = table.locator("th").all_inner_texts()
    column = headers.index("id")
    shown = table.locator("tbody tr").evaluate_all(f"rows => rows.map(r => r.cells[{column}].textContent)")
    assert sorted(shown) == sorted(e["id"] for e in events)
    shot(page, "chat")


def test_verify_view_checks_the_proof(page: Page, api: httpx.Client) -> None:
    event = post(api, message=f"verify-{RUN}")
    deadline = time.monotonic() + 15
    while True:  # the worker integrates new events into the signed tree within about a second
        if api.get(f"/api/v1/logs/{event['id']}/proof").status_code == 200:
            break
        assert time.monotonic() < deadline, "the event never reached a checkpoint"
        time.sleep(0.3)
    goto(page, f"verify/{event['id']}")
    expect(page.get_by_test_id("verdict")).to_have_text(
        "Included: the proof leads to the root of a checkpoint signed by a published key."
    )
    expect(page.get_by_test_id("checkpoint")).to_contain_text("verified (key auditlog.example)")
    shot(page, "verify")


def test_admin_pages(page: Page, tenant: TenantFixture, server: Server) -> None:
    goto(page, "users")
    expect(page.get_by_role("table", name="Users")).to_contain_text("auditor")
    form = page.get_by_role("form", name="Create user")
    form.get_by_label("Username").fill(f"dana{RUN}")
    form.get_by_label("Password").fill(f"a long passphrase {RUN} for dana")
    form.get_by_label("Role").select_option("Auditor")
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("table", name="Users")).to_contain_text(f"dana{RUN}")
    shot(page, "users")

    goto(page, "keys")
    form = page.get_by_role("form", name="Create key")
    form.get_by_label("Name").fill(f"ci-{RUN}")
    form.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("secret").locator("code")
    expect(secret).to_be_visible()
    key = secret.inner_text()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/api/v1/logs", headers={"X-API-Key": key}).status_code == 200
    expect(page.get_by_role("table", name="API keys")).to_contain_text(f"ci-{RUN}")
    shot(page, "keys")
    page.reload()
    expect(page.get_by_role("table", name="API keys")).to_contain_text(f"ci-{RUN}")
    assert key not in page.content()  # shown once

    goto(page, "retention")
    page.get_by_label("Days").fill("400")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_role("status").first).to_contain_text("kept 400 days")
    shot(page, "retention")

    goto(page, "alerts")
    form = page.get_by_role("form", name="Create rule")
    form.get_by_label("Name").fill(f"errors-{RUN}")
    form.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hook")
    form.get_by_label("CRITICAL").check()
    form.get_by_role("button", name="Create rule").click()
    expect(page.get_by_test_id("secret")).to_contain_text("webhook secret")
    rules = page.get_by_role("table", name="Alert rules")
    expect(rules).to_contain_text(f"errors-{RUN}")
    expect(rules).to_contain_text("severity=CRITICAL")
    rules.get_by_role("button", name="Deliveries").first.click()
    expect(page.get_by_role("heading", name=f"Deliveries of errors-{RUN}")).to_be_visible()
    shot(page, "alerts")


def test_auditor_sees_no_write_controls(browser: Browser, server: Server, tenant: TenantFixture) -> None:
    context = _context(browser)
    try:
        tab = context.new_page()
        sign_in(tab, server, tenant.name, "auditor", tenant.passwords["auditor"])
        expect(tab.get_by_test_id("role")).to_have_text("(Auditor)")
        nav = tab.get_by_role("navigation", name="Main")
        for hidden in ["Users", "API keys", "Retention"]:
            expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
        for route in ["tail", "search", "stats", "exports", "chat", "verify", "alerts"]:
            goto(tab, route)
            expect(tab.get_by_role("heading", level=1)).to_be_visible()
            tab.wait_for_load_state("networkidle")
            assert tab.locator("[data-write]").count() == 0, route
            for label in ["Create", "Delete", "Revoke", "Save", "Disable", "Enable"]:
                assert tab.get_by_role("button", name=label).count() == 0, (route, label)
        expect(tab.get_by_role("table", name="Alert rules")).to_contain_text(f"errors-{RUN}")  # reads them
        goto(tab, "users")
        expect(tab.get_by_role("heading", level=1)).to_have_text("Not here")
        shot(tab, "auditor-alerts")
    finally:
        context.close()


def test_the_access_token_is_refreshed_before_it_expires(page: Page, server: Server) -> None:
    first = token_of(page)
    assert first
    deadline = time.monotonic() + TTL_SECONDS + 5
    while token_of(page) == first:
        assert time.monotonic() < deadline, "the console did not refresh its access token"
        page.wait_for_timeout(250)
    goto(page, "search")
    expect(page.get_by_test_id("search-status")).to_contain_text("Page 1")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        fresh = client.get("/api/v1/logs", headers={"Authorization": f"Bearer {token_of(page)}"})
        assert fresh.status_code == 200


def test_logout_ends_the_session(page: Page, server: Server, errors: list[str]) -> None:
    token = token_of(page)
    assert token
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert token_of(page) is None
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/api/v1/logs", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not script_errors(errors), errors
