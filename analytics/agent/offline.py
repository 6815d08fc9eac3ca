"""The built-in offline model (``AUDIT_LLM_MODEL`` unset): a pydantic-ai ``FunctionModel`` that answers the
common audit questions with no network and nothing downloaded.

It plays the part of a hosted model through the same agent, tool and checks: it reads the schema and the
current time from the instructions the agent sends every model, turns the conversation's questions into an
intent (``analytics.agent.intent``), calls the ``run_sql`` tool with SQL, and when the rows come back puts
them into words. A question it cannot place is answered "I can't answer that offline" - never a made-up
number. A refused or failing statement is reported as such (it does not retry: its SQL would not change).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from analytics.agent.catalog import Catalog
from analytics.agent.intent import Intent, resolve, to_sql

__all__ = ["NOW_MARKER", "OFFLINE_MODEL_NAME", "offline_model"]

OFFLINE_MODEL_NAME: Final = "auditlog-offline"
NOW_MARKER: Final = "Current time: "
TOOL: Final = "run_sql"
CANNOT: Final = (
    "I can't answer that offline. I understand counts, breakdowns and top-N by action, severity, resource type, "
    "user or IP, time series per hour or day, and listings of events, filtered by severity, action, resource "
    'type, user, IP, metadata key, failures and time (e.g. "last 24 hours", "between 2025-07-01 and '
    '2025-07-24"). Set AUDIT_LLM_MODEL to use a language model.'
)
_FIELD_NAMES: Final = {
    "action": "action",
    "severity": "severity",
    "resource_type": "resource type",
    "resource_id": "resource",
    "user_id": "user",
    "ip_address": "IP address",
    "session_id": "session",
}


def _now(info: AgentInfo) -> datetime:
    for line in (info.instructions or "").splitlines():
        if line.startswith(NOW_MARKER):
            return datetime.fromisoformat(line[len(NOW_MARKER) :].strip().replace("Z", "+00:00"))
    return datetime.now(UTC)


def _questions(messages: list[ModelMessage]) -> list[str]:
    out = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    out.append(part.content)
    return out


def subject(intent: Intent) -> str:
    """The events an intent is about, in words (``failed LOGIN events of user u-1 from 10.0.0.1``)."""
    words: list[str] = []
    if intent.failed and not any("FAIL" in a for a in intent.actions):
        words.append("failed")
    if intent.severities:
        words.append("/".join(intent.severities))
    if intent.actions:
        words.append("/".join(intent.actions))
    words.extend(intent.action_words)
    words.append("events")
    if intent.resource_types:
        words.append("on " + "/".join(intent.resource_types))
    if intent.user_id is not None:
        words.append(f"of user {intent.user_id}")
    if intent.ip_address is not None:
        words.append(f"from {intent.ip_address}")
    if intent.metadata_key is not None:
        words.append(f"with metadata key {intent.metadata_key}")
    if intent.window is not None:
        words.append(intent.window.label)
    return " ".join(words)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def words(intent: Intent, result: dict[str, Any]) -> str:
    """What the rows of ``intent``'s query show."""
    rows: list[list[Any]] = result.get("rows", [])
    columns: list[str] = result.get("columns", [])
    what = subject(intent)
    note = " Only your own tenant's events are visible to me." if intent.mentions_tenant else ""
    if intent.kind == "count":
        n = rows[0][0] if rows else 0
        return f"There {'is' if n == 1 else 'are'} {_n(n)} {what}.{note}"
    if intent.kind in ("group", "series"):
        if not rows:
            return f"There are no {what}.{note}"
        total = sum(int(r[-1]) for r in rows)
        if intent.kind == "series":
            busiest = max(rows, key=lambda r: r[-1])
            unit = intent.group_by or "day"
            return (
                f"{_n(total)} {what}, per {unit}: {len(rows)} {unit}s with events; the busiest was "
                f"{str(busiest[0])[: 10 if unit in ('day', 'week', 'month') else 16].replace('T', ' ')} with "
                f"{_n(busiest[-1])}.{note}"
            )
        field = _FIELD_NAMES.get(columns[0] if columns else "", columns[0] if columns else "value")
        shown = ", ".join(f"{r[0] if r[0] is not None else '(none)'}: {_n(r[-1])}" for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        head = f"Top {len(rows)} by {field}" if intent.top else f"By {field}"
        cut = " (the first rows only: there are more)" if result.get("truncated") else ""
        return f"{head}, {what}: {shown}{more}{cut}. That is {_n(total)} events in these rows.{note}"
    count = int(result.get("row_count", len(rows)))
    if count == 0:
        return f"There are no {what}.{note}"
    head = (
        f"Showing the first {_n(count)} {what}; there are more, so narrow the question to see them all."
        if result.get("truncated")
        else f"Found {_n(count)} {what}."
    )
    latest = dict(zip(columns, rows[0], strict=False))
    parts = [str(latest.get("timestamp", ""))[:19].replace("T", " ")]
    for key, label in (("severity", ""), ("action", ""), ("resource_type", "on "), ("resource_id", ""),
                       ("user_id", "by ")):  # fmt: skip
        if latest.get(key):
            parts.append(f"{label}{latest[key]}")
    return f"{head} The latest: {' '.join(p for p in parts if p)}.{note}"


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    catalog = Catalog.from_text(info.instructions)
    intent = resolve(_questions(messages), catalog, _now(info))
    last = messages[-1] if messages else None
    returns = [p for p in getattr(last, "parts", ()) if isinstance(p, ToolReturnPart) and p.tool_name == TOOL]
    if returns:
        content = returns[-1].content
        if isinstance(content, dict) and intent is not None:
            return ModelResponse(parts=[TextPart(words(intent, content))])
        reason = re.sub(r"\s+", " ", str(content)).strip()
        return ModelResponse(parts=[TextPart(f"I could not run the query: {reason}")])
    if intent is None or intent.kind is None:
        return ModelResponse(parts=[TextPart(CANNOT)])
    return ModelResponse(parts=[ToolCallPart(TOOL, {"sql": to_sql(intent)})])


def offline_model() -> FunctionModel:
    return FunctionModel(_respond, model_name=OFFLINE_MODEL_NAME)
