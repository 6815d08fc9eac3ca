"""The one logging configuration: JSON lines for our loggers, Granian's (given the same dictionary, as
``auditlog serve`` does) and Python warnings; chatty libraries held at WARNING."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest
from granian.log import LogLevels
from granian.log import configure_logging as granian_configure_logging

from app.web.observability import capture_warnings, configure_logging, logging_dictconfig, request_id_var


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging("WARNING", json_lines=False)  # away from this test's captured stderr


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_granian_and_our_loggers_and_warnings_write_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    granian_configure_logging(LogLevels.info, logging_dictconfig("INFO"))  # what Granian does with it
    logging.getLogger("_granian").info("Starting granian")
    token = request_id_var.set("rid-unit-1")
    try:
        logging.getLogger("app.lifecycle").info("stopped %s", "worker")
    finally:
        request_id_var.reset(token)
    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.simplefilter("always")
        capture_warnings()  # as the auditlog command does
        warnings.warn("something odd", UserWarning, stacklevel=1)
    lines = _lines(capsys.readouterr().err)
    by_logger = {line["logger"]: line for line in lines}
    assert by_logger["_granian"]["msg"] == "Starting granian"
    assert by_logger["app.lifecycle"] == {**by_logger["app.lifecycle"], "msg": "stopped worker"}
    assert by_logger["app.lifecycle"]["request_id"] == "rid-unit-1"
    assert "request_id" not in by_logger["_granian"]  # only lines caused by a request carry one
    assert "something odd" in str(by_logger["py.warnings"]["msg"])


def test_chatty_libraries_log_warnings_only(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("saq").info("Scheduled ['cron:x']")
    logging.getLogger("saq").warning("a real problem")
    messages = [line["msg"] for line in _lines(capsys.readouterr().err)]
    assert messages == ["a real problem"]


def test_exceptions_are_one_line_with_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("app.x").exception("failed")
    [line] = _lines(capsys.readouterr().err)
    assert line["level"] == "error" and "ValueError: bad thing" in str(line["exc"])
