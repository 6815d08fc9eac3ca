"""One log format for every process and logger, and the request id on every line a request causes.

``logging_dictconfig`` is the single logging configuration: ``auditlog serve`` applies it before anything
logs, hands the same dictionary to Granian (whose own loggers, in the main process and in every worker,
would otherwise print ``[INFO] ...`` text) and the app factory applies it again in each worker, with
Litestar's own logging configuration switched off. ``auditlog worker`` and ``auditlog migrate`` (alembic)
go through it too. ``JsonFormatter`` writes one JSON object per line; the request id comes from
``request_id_var``, which ``app.web.request_context`` sets for the whole life of a request, so lines logged by
handlers, services and the tasks they start carry it without being passed it.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import time
import warnings
from typing import Any, TextIO

import msgspec

__all__ = ["JsonFormatter", "capture_warnings", "configure_logging", "logging_dictconfig", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "tenant_id", "client")
_QUIET = (
    "httpx",
    "httpcore",
    "saq",
    "asyncio",
    "granian.access",
    "aiosqlite",
    "psycopg",
    "psycopg.pool",
    "alembic.runtime.plugins",
    "botocore",
    "aiobotocore",
    "boto3",
    "aioboto3",
    "s3transfer",
    "urllib3",
)
"""Chatty libraries: warnings and above only (SAQ logs every cron enqueue at INFO, alembic each plugin it
loads); alembic's migration lines stay. botocore's debug lines carry request headers (``Authorization`` names
a scheduled export's access key id) and httpx's info lines full URLs (a receiver's query token): never below
warning, whatever ``AUDIT_LOG_LEVEL`` says."""


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, <access fields>?, "exc"?}`` on one line.

    It runs once per request for the access line, so it keeps its cost down: msgspec's encoder, and the
    timestamp's seconds formatted once per second.
    """

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second = -1
        self._second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # a benign race between threads only recomputes the same text
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key in _EXTRA_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self._encoder.encode(entry).decode()


def logging_dictconfig(level: str = "INFO", *, json_lines: bool = True) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of every process: one stderr handler on the root logger.

    Granian merges this dictionary over its own (top-level keys replace its ``formatters``, ``handlers``
    and ``loggers``), so its ``_granian`` logger propagates to the root handler instead of printing text.
    """
    level = level.upper()
    quiet_level = logging.getLevelName(max(logging.WARNING, logging.getLevelName(level)))
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if json_lines else {"format": "%(levelname)s %(name)s %(message)s"}
    )
    loggers: dict[str, Any] = {name: {"level": quiet_level} for name in _QUIET}
    # Granian's loggers: no handler of their own, through the root's. Granian sets ``_granian``'s level.
    loggers["_granian"] = {"handlers": [], "propagate": True, "level": level}
    loggers["granian.access"] = {"handlers": [], "propagate": True, "level": quiet_level}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": loggers,
    }


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Apply ``logging_dictconfig`` to this process (idempotent: it replaces the root's handlers)."""
    logging.config.dictConfig(logging_dictconfig(level, json_lines=json_lines))


def capture_warnings() -> None:
    """Python warnings become ``py.warnings`` log lines, JSON like the rest, in this process and the Granian
    workers it forks. Called by the ``auditlog`` command, not by the app factory, so that a test run keeps
    its own warning capture."""
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line).strip()
    logging.getLogger("py.warnings").warning("%s", text)
