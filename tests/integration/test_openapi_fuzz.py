"""Schemathesis against a live server: the OpenAPI document and the service must agree (issue 13 section 4).

A real Granian server on 127.0.0.1 serves the test database; schemathesis 4 loads its
``/schema/openapi.json`` and runs every check it has (the CLI's ``--checks all``) over every operation the
document lists (so routes added later are fuzzed too), in positive and negative mode, a few examples per
operation with a fixed seed, once as a tenant Admin and once as the operator. ``/auth/logout`` is left out:
it would end the very session the run is using. Any finding fails the test with schemathesis' report.

One allowance, narrow and listed in :data:`BEYOND_SCHEMA`: a rule JSON Schema cannot state (a time window
relative to now, a password list, where a URL resolves) may refuse a schema-valid value with ``422``; such a
rejection is forgiven only when every error of the problem names a field listed for that operation.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from app.settings import Settings
from tests.conftest import ApiClient, Database, make_tenant, operator_headers
from tests.servers import start_granian, stop_serve

pytestmark = pytest.mark.slow

SEED = 20261130
EXAMPLES = 2

_EVENT_RULES = {"timestamp", "resource_type"}  # 2000-01-01 .. now + 5 min; the service's reserved types
_SCHEDULE_RULES = {"destination.url", "destination.endpoint_url", "destination.headers", "start_at",
                   "filters.start_time", "filters.ip_address"}  # fmt: skip
BEYOND_SCHEMA: dict[str, set[str]] = {
    "POST /api/v1/logs": _EVENT_RULES,
    "POST /api/v1/logs/bulk": _EVENT_RULES,
    "POST /api/v1/tenants/{tenant_id}/users": {"password", "username"},  # not a common password; not UUID-like
    "POST /api/v1/tenants": {"name"},  # not UUID-like (logins take a name or an id)
    "POST /api/v1/alerts": {"webhook_url"},  # must not resolve to a private, loopback or metadata address
    "PATCH /api/v1/alerts/{alert_id}": {"webhook_url"},
    "DELETE /api/v1/logs/cleanup": {"before"},  # not in the future
    # destinations must not resolve to private, loopback or metadata addresses nor set the service's own headers;
    # start_at within a year of now; filters: start_time <= end_time, a well-formed IP address
    "POST /api/v1/export-schedules": _SCHEDULE_RULES,
    "PATCH /api/v1/export-schedules/{schedule_id}": _SCHEDULE_RULES,
    "GET /api/v1/checkpoints/consistency": {"from", "to"},  # from <= to <= the tenant's integrated tree size
    "GET /api/v1/logs/{event_id}/proof": {"tree_size"},  # must include the event (greater than its leaf index)
}


def _config(headers: dict[str, str]) -> Any:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "request-timeout": 20,
            "workers": 2,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
                # The identity is the configured Authorization header: do not also generate API keys, whose
                # garbage values the ignored_auth check would then expect to be refused.
                "with-security-parameters": False,
            },
            "checks": {"enabled": True},  # every check, as --checks all
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": False},  # hundreds of boundary cases per operation: minutes, not seconds
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


def _run(base_url: str, headers: dict[str, str]) -> tuple[list[str], int]:
    """Fuzz every operation but logout; the findings (as schemathesis reports them) and the cases sent."""
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json", config=_config(headers))
    schema.config.base_url = base_url
    schema = schema.exclude(path="/api/v1/auth/logout")
    bodies: dict[str, str] = {}

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
            fields = {e.get("field") for e in (response.json().get("errors") or [{}])}
            if fields <= BEYOND_SCHEMA.get(case.operation.label, set()):
                return False
        bodies[case.operation.label] = response.text[:600]
        return True

    findings: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        label = event.recorder.label
                        findings.append(f"{label}: {check.name}: {failure.title}\n{failure.message}\n"
                                        f"{check.failure_info.code_sample}\n-> {bodies.get(label, '')}")  # fmt: skip
        elif isinstance(event, events.NonFatalError):
            findings.append(f"{event.label}: error: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return findings, cases


async def test_the_openapi_document_matches_the_service(
    client: ApiClient, database: Database, settings: Settings, tmp_path: Path
) -> None:
    tenant = await make_tenant(client)
    operator = await operator_headers(client)
    server = start_granian(
        settings,
        tmp_path / "server.log",
        wait=False,
        AUDIT_ACCESS_LOG="false",
        AUDIT_FAILED_AUTH_PER_MINUTE="10000000",  # ignored_auth sends invalid credentials on purpose
    )
    try:
        await asyncio.to_thread(server.wait_ready)
        report: list[str] = []
        for who, headers in (("Admin", tenant.admin), ("operator", operator)):
            findings, cases = await asyncio.to_thread(_run, server.url, headers)
            assert cases >= 20, f"{who}: only {cases} cases ran"
            report += [f"[{who}] {f}" for f in findings]
        assert not report, "\n\n".join(dict.fromkeys(report))
    finally:
        stop_serve(server)
