"""``RequestContext`` at the ASGI level: the id it assigns or keeps, the header it adds, and the status its
access line records when the app answered, raised, or never answered (the client went away)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.web.observability import request_id_var
from app.web.request_context import RequestContext


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/x", "headers": headers or [], "client": ("10.0.0.9", 1)}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await RequestContext(app)(scope, _receive, send)  # type: ignore[arg-type]
    return sent


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "auditlog.access"]


async def test_answered_request_keeps_a_sane_id_and_logs_its_status(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(request_id_var.get())
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    caplog.set_level(logging.INFO, logger="auditlog.access")
    scope = _scope([(b"x-request-id", b"client-id-1")])
    sent = await _call(app, scope)
    assert seen == ["client-id-1"] and scope["state"]["request_id"] == "client-id-1"
    assert (b"x-request-id", b"client-id-1") in sent[0]["headers"]
    [record] = _access(caplog)
    assert (record.status, record.method, record.path, record.client) == (201, "POST", "/x", "10.0.0.9")  # type: ignore[attr-defined]
    assert request_id_var.get() is None  # reset after the request


async def test_an_insane_id_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = await _call(app, _scope([(b"x-request-id", b"bad id\n with spaces")]))
    [(_, value)] = [h for h in sent[0]["headers"] if h[0] == b"x-request-id"]
    assert value != b"bad id\n with spaces" and len(value) > 10


async def test_a_raising_app_is_logged_as_500_and_the_error_propagates(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("escaped")

    caplog.set_level(logging.INFO, logger="auditlog.access")
    with pytest.raises(RuntimeError):
        await _call(app, _scope())
    assert [r.status for r in _access(caplog)] == [500]  # type: ignore[attr-defined]


async def test_an_unanswered_request_is_logged_as_499(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return  # the client went away before any response

    caplog.set_level(logging.INFO, logger="auditlog.access")
    assert await _call(app, _scope()) == []
    assert [r.status for r in _access(caplog)] == [499]  # type: ignore[attr-defined]


async def test_access_line_off(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.INFO, logger="auditlog.access")
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await RequestContext(app, log_access=False)(_scope(), _receive, send)  # type: ignore[arg-type]
    assert _access(caplog) == [] and any(h[0] == b"x-request-id" for h in sent[0]["headers"])
