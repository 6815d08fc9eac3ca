"""The offline model's understanding of a question: a small, deterministic parser from common audit questions
to an :class:`Intent` (what to measure, which filters, which time window), and from an intent to SQL.

It knows the shapes analysts ask most: counts ("how many ..."), breakdowns and top-N by a field ("by
action", "top 5 users", "failed logins by IP"), time series ("per day", "hourly"), listings ("show all
ERROR logs ...", "the latest 10 events of user-3"); filters by severity, action, resource type, user, IP,
metadata key, "failed"; time windows ("last 24 hours", "yesterday", "this month", "last week" = the past
7 days, "between 2025-07-01 and 2025-07-24" = both days whole, "since ...", "on ...", "in July 2025").
Action and resource-type words are matched against the tenant's own value sets (the catalog).

Follow-ups ("and only the failed ones?", "same for last week", "what about WARNING?") start from the
previous question's intent and replace or add what the new one names. A question it cannot place gets
``None``: the model then says so rather than guess.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from analytics.agent.catalog import Catalog

__all__ = ["Intent", "Window", "parse", "resolve", "to_sql"]

SEVERITY_WORDS: Final = {
    "critical": "CRITICAL",
    "error": "ERROR",
    "errors": "ERROR",
    "warning": "WARNING",
    "warnings": "WARNING",
    "warn": "WARNING",
    "info": "INFO",
}
GROUP_FIELDS: Final = {
    "action": "action",
    "actions": "action",
    "severity": "severity",
    "severities": "severity",
    "level": "severity",
    "resource type": "resource_type",
    "resource types": "resource_type",
    "resource_type": "resource_type",
    "type": "resource_type",
    "types": "resource_type",
    "resource": "resource_id",
    "resources": "resource_id",
    "resource id": "resource_id",
    "resource_id": "resource_id",
    "user": "user_id",
    "users": "user_id",
    "user id": "user_id",
    "user_id": "user_id",
    "actor": "user_id",
    "actors": "user_id",
    "ip": "ip_address",
    "ips": "ip_address",
    "ip address": "ip_address",
    "ip addresses": "ip_address",
    "ip_address": "ip_address",
    "address": "ip_address",
    "session": "session_id",
    "sessions": "session_id",
    "day": "day",
    "days": "day",
    "date": "day",
    "hour": "hour",
    "hours": "hour",
    "week": "week",
    "month": "month",
}
TIME_BUCKETS: Final = ("hour", "day", "week", "month")
LIST_COLUMNS: Final = (
    '"timestamp"', "severity", "action", "resource_type", "resource_id", "user_id", "ip_address", "message", "id",
)  # fmt: skip
_UNITS: Final = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}
_STOP: Final = frozenset(
    """
    events event logs log activity activities with has have had in is was did do does the a an and or
    between from since during last this over per by on at for of to who which most actions action id ids
    sessions session what are were did made performed count many
    """.split()  # noqa: SIM905
)
_DATE: Final = r"(\d{4}-\d{2}-\d{2}(?:[ t]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?z?)"
_FIELD_WORDS: Final = "|".join(sorted((re.escape(k) for k in GROUP_FIELDS), key=len, reverse=True))
_FOLLOW_UP: Final = re.compile(
    r"^\s*(and|but|also|now|then|what about|how about|same|only|just|ok|okay|instead)\b"
    r"|\b(same|those|these|them|ones|that one|instead)\b"
)
_MONTHS: Final = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None
    """Exclusive."""
    label: str


@dataclass(frozen=True)
class Intent:
    kind: str | None = None
    """``count``, ``group``, ``series`` or ``list``."""
    group_by: str | None = None
    top: int | None = None
    limit: int | None = None
    severities: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    action_words: tuple[str, ...] = ()
    """Action stems to match as substrings when ``failed`` (``failed logins``: LOGIN and FAIL)."""
    resource_types: tuple[str, ...] = ()
    user_id: str | None = None
    ip_address: str | None = None
    metadata_key: str | None = None
    failed: bool = False
    window: Window | None = None
    mentions_tenant: bool = False
    given: frozenset[str] = field(default_factory=frozenset)
    """The fields this question itself named (a follow-up replaces only these)."""


def _day(value: str) -> datetime:
    text = value.upper().replace(" ", "T").rstrip("Z")
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _has_time(value: str) -> bool:
    return bool(re.search(r"\d[ t]\d{2}:", value))


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if (ts.hour, ts.minute, ts.second) != (0, 0, 0) else ts.strftime("%Y-%m-%d")


def _midnight(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def parse_window(text: str, now: datetime) -> Window | None:
    """The time window ``text`` names, if any (``text`` lower-cased)."""
    if m := re.search(rf"(?:between|from)\s+{_DATE}\s+(?:and|to|until|till|through|-)\s+{_DATE}", text):
        start = _day(m.group(1))
        end = _day(m.group(2))
        if not _has_time(m.group(2)):
            end += timedelta(days=1)
        return Window(start, end, f"between {_fmt(start)} and {_fmt(end - timedelta(seconds=1))} UTC")
    if m := re.search(rf"\b(?:since|after)\s+{_DATE}", text):
        start = _day(m.group(1))
        return Window(start, None, f"since {_fmt(start)} UTC")
    if m := re.search(rf"\b(?:before|until)\s+{_DATE}", text):
        end = _day(m.group(1))
        return Window(None, end, f"before {_fmt(end)} UTC")
    if m := re.search(rf"\b(?:on\s+)?{_DATE}", text):
        start = _day(m.group(1))
        return Window(_midnight(start), _midnight(start) + timedelta(days=1), f"on {_fmt(_midnight(start))} (UTC)")
    if m := re.search(r"\b(?:last|past|previous|recent)\s+(\d+)\s+(minute|hour|day|week|month|year)s?\b", text):
        n, unit = int(m.group(1)), m.group(2)
        start = now - timedelta(seconds=n * _UNITS[unit])
        return Window(start, None, f"in the last {n} {unit}{'s' if n != 1 else ''} (since {_fmt(start)} UTC)")
    if m := re.search(r"\b(?:last|past|previous)\s+(minute|hour|day|week|month|year)\b", text):
        unit = m.group(1)
        start = now - timedelta(seconds=_UNITS[unit])
        return Window(start, None, f"in the last {unit} (since {_fmt(start)} UTC)")
    today = _midnight(now)
    if re.search(r"\byesterday\b", text):
        start = today - timedelta(days=1)
        return Window(start, today, f"yesterday ({_fmt(start)} UTC)")
    if re.search(r"\btoday\b", text):
        return Window(today, None, f"today ({_fmt(today)} UTC)")
    if re.search(r"\bthis week\b", text):
        start = today - timedelta(days=today.weekday())
        return Window(start, None, f"this week (since {_fmt(start)} UTC)")
    if re.search(r"\bthis month\b", text):
        start = today.replace(day=1)
        return Window(start, None, f"this month (since {_fmt(start)} UTC)")
    if re.search(r"\bthis year\b", text):
        start = today.replace(month=1, day=1)
        return Window(start, None, f"this year (since {_fmt(start)} UTC)")
    if m := re.search(r"\b(?:in\s+)?(" + "|".join(_MONTHS) + r")\s+(\d{4})\b", text):
        month, year = _MONTHS[m.group(1)], int(m.group(2))
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return Window(start, end, f"in {calendar.month_name[month]} {year} (UTC)")
    return None


def _forms(value: str) -> list[str]:
    """Words a question may use for an action or resource type value (``DELETE``: delete, deletes, deleted,
    deletion...)."""
    low = value.lower()
    spaced = low.replace("_", " ").replace(".", " ")
    out = {low, spaced, low + "s", spaced + "s", low + "es", low + "d", low + "ed", low + "ing"}
    if low.endswith("e"):
        out |= {low[:-1] + "ion", low[:-1] + "ions", low[:-1] + "ing", low[:-1] + "ed"}
    if low.endswith("y"):
        out |= {low[:-1] + "ies"}
    return sorted(out, key=len, reverse=True)


def _match_values(text: str, values: list[str], reserved: frozenset[str] = frozenset()) -> tuple[list[str], str]:
    """The ``values`` that ``text`` mentions (longest first), and ``text`` with their mentions blanked out."""
    found: list[str] = []
    for value in sorted(values, key=len, reverse=True):
        for form in _forms(value):
            if form in reserved:
                continue
            pattern = rf"(?<![\w.-]){re.escape(form)}(?![\w-])"
            if re.search(pattern, text):
                found.append(value)
                text = re.sub(pattern, " ", text)
                break
    return found, text


def _group_by(text: str) -> tuple[str | None, int | None]:
    top = None
    if m := re.search(rf"\btop\s+(\d+)\s+(?:most\s+\w+\s+)?({_FIELD_WORDS})\b", text):
        return GROUP_FIELDS[m.group(2)], int(m.group(1))
    if m := re.search(rf"\btop\s+({_FIELD_WORDS})\b", text):
        return GROUP_FIELDS[m.group(1)], 10
    if m := re.search(r"\btop\s+(\d+)\b", text):
        top = int(m.group(1))
    if m := re.search(
        rf"\b(?:by|per|for each|each|grouped by|broken down by|breakdown by|across)\s+({_FIELD_WORDS})\b", text
    ):
        return GROUP_FIELDS[m.group(1)], top
    if m := re.search(
        rf"\bmost\s+(?:active|frequent|common|used|targeted|affected|popular)\s+({_FIELD_WORDS})\b", text
    ):
        return GROUP_FIELDS[m.group(1)], top or 10
    if m := re.search(rf"\b(?:which|what)\s+({_FIELD_WORDS})\b.*\b(?:most|more)\b", text):
        return GROUP_FIELDS[m.group(1)], top or 10
    if re.search(r"\bwho\b.*\b(?:most|more)\b", text):
        return "user_id", top or 10
    if m := re.search(rf"\b({_FIELD_WORDS})\s+(?:breakdown|distribution|split|counts)\b", text):
        return GROUP_FIELDS[m.group(1)], top
    if m := re.search(rf"\b(?:breakdown|distribution|split)\s+of\s+(?:\w+\s+)*?({_FIELD_WORDS})\b", text):
        return GROUP_FIELDS[m.group(1)], top
    if re.search(r"\b(?:daily|over time|trend|timeline|time series)\b", text):
        return "day", top
    if re.search(r"\bhourly\b", text):
        return "hour", top
    if re.search(r"\bweekly\b", text):
        return "week", top
    if re.search(r"\bmonthly\b", text):
        return "month", top
    return None, top


def parse(question: str, catalog: Catalog, now: datetime) -> Intent:
    """What one question says on its own (see :func:`resolve` for follow-ups)."""
    original = " ".join(question.split())
    text = original.lower()
    given: set[str] = set()
    values: dict[str, object] = {}

    window = parse_window(text, now)
    if window is not None:
        values["window"] = window
        given.add("window")
    text_wo_dates = re.sub(_DATE, " ", text)

    if m := re.search(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b", text_wo_dates) or re.search(
        r"(?<![\w:])([0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})(?![\w:])", text_wo_dates
    ):
        try:
            values["ip_address"] = str(ipaddress.ip_address(m.group(1)))
            given.add("ip_address")
            text_wo_dates = text_wo_dates.replace(m.group(1), " ")
        except ValueError:
            pass

    if m := re.search(r"\bmetadata\s+(?:key|field)?\s*['\"`]?([a-z0-9_-]+)['\"`]?", text_wo_dates) or re.search(
        r"\b(?:with|having|has)\s+(?:an?\s+)?['\"`]?([a-z0-9_-]+)['\"`]?\s+(?:key\s+|field\s+)?in\s+(?:the\s+)?metadata\b",
        text_wo_dates,
    ):
        key = m.group(1)
        if key not in ("key", "field", "keys"):
            wanted = {k.lower(): k for k in catalog.metadata_keys}
            values["metadata_key"] = wanted.get(key, key)
            given.add("metadata_key")
            text_wo_dates = text_wo_dates.replace(m.group(0), " ")

    if m := re.search(
        r"\b(?:user|user_id|user id|actor)\b\s*[=:]?\s*['\"`]?([a-z0-9][\w.@:+-]*)['\"`]?", text_wo_dates
    ) or re.search(r"\b(?:of|for|by)\s+['\"`]?([a-z][\w.@+-]*\d[\w.@+-]*)['\"`]?", text_wo_dates):
        candidate = m.group(1).rstrip(".,?!")
        if candidate not in _STOP and candidate not in GROUP_FIELDS:
            # the value as written (user ids are case-sensitive)
            found = re.search(re.escape(candidate), original, re.IGNORECASE)
            values["user_id"] = found.group(0) if found else candidate
            given.add("user_id")
            text_wo_dates = text_wo_dates.replace(m.group(0), " ")

    if re.search(r"\bfail(?:ed|s|ing|ure|ures)?\b|\bunsuccessful\b", text_wo_dates):
        values["failed"] = True
        given.add("failed")

    rest = text_wo_dates
    resource_types, rest = _match_values(
        rest, list(catalog.resource_types), reserved=frozenset(GROUP_FIELDS) | {"users", "user"}
    )
    m_rt = re.search(r"\bresource[ _]type\s*[=:]?\s*['\"`]?([a-z0-9_.:-]+)", rest)
    if m_rt and m_rt.group(1) not in _STOP and m_rt.group(1) not in GROUP_FIELDS:
        resource_types.append(next((v for v in catalog.resource_types if v.lower() == m_rt.group(1)), m_rt.group(1)))
    if resource_types:
        values["resource_types"] = tuple(sorted(set(resource_types)))
        given.add("resource_types")
    actions, rest = _match_values(rest, list(catalog.actions))
    if values.get("failed"):
        stems = [a for a in actions if "FAIL" not in a]
        exact = [a for a in actions if "FAIL" in a]
        if exact:
            values["actions"] = tuple(sorted(exact))
            given.add("actions")
        elif stems:
            values["action_words"] = tuple(sorted(stems))
            given.add("action_words")
    elif actions:
        values["actions"] = tuple(sorted(actions))
        given.add("actions")
    elif m := re.search(r"\blog ?ins?\b|\bsign[- ]?ins?\b", rest):
        values["action_words"] = ("LOGIN",)
        given.add("action_words")

    severities = sorted({SEVERITY_WORDS[w] for w in re.findall(r"\b(critical|errors?|warnings?|warn|info)\b", rest)})
    if severities:
        values["severities"] = tuple(severities)
        given.add("severities")

    group_by, top = _group_by(rest)
    limit = None
    if m := re.search(
        r"\b(?:latest|last|most recent|recent|newest|first)\s+(\d+)\b(?!\s*(?:minute|hour|day|week|month|year)s?\b)",
        rest,
    ):
        limit = int(m.group(1))
    kind = None
    if group_by == "user_id" and "user_id" in given:
        group_by = None
    if group_by is not None:
        kind = "series" if group_by in TIME_BUCKETS else "group"
        values["group_by"] = group_by
        given.add("group_by")
        if top is not None:
            values["top"] = top
            given.add("top")
    elif re.search(r"\b(?:how many|count|number of|total|amount of)\b", rest):
        kind = "count"
    elif limit is not None or re.search(
        r"\b(?:show|list|display|give me|find|get|fetch|what are|what were|latest|recent|newest|see|all)\b", rest
    ):
        kind = "list"
    if limit is not None:
        values["limit"] = limit
        given.add("limit")
    if kind is not None:
        values["kind"] = kind
        given.add("kind")
    values["mentions_tenant"] = bool(re.search(r"\btenant\b", text))
    return Intent(given=frozenset(given), **values)  # type: ignore[arg-type]


_FILTER_FIELDS: Final = (
    "severities",
    "actions",
    "action_words",
    "resource_types",
    "user_id",
    "ip_address",
    "metadata_key",
)


def _merge(previous: Intent, new: Intent) -> Intent:
    """``new`` as a follow-up of ``previous``: what it names replaces the previous value, the rest carries over."""
    changes: dict[str, object] = {name: getattr(new, name) for name in new.given}
    if "actions" in new.given:
        changes["action_words"] = ()
    if "action_words" in new.given:
        changes["actions"] = ()
    if "group_by" in new.given and "top" not in new.given:
        changes["top"] = None
    if "kind" in new.given and new.kind in ("count", "list") and "group_by" not in new.given:
        changes["group_by"] = None
    changes["mentions_tenant"] = new.mentions_tenant
    return replace(previous, given=previous.given | new.given, **changes)  # type: ignore[arg-type]


def resolve(questions: list[str], catalog: Catalog, now: datetime) -> Intent | None:
    """The intent of the last question, read as a follow-up of the ones before it where it is one; ``None``
    when there is nothing to answer."""
    current: Intent | None = None
    for question in questions:
        parsed = parse(question, catalog, now)
        follow_up = current is not None and bool(_FOLLOW_UP.search(question.lower()))
        if follow_up and current is not None:
            current = _merge(current, parsed)
        elif parsed.kind is not None:
            current = parsed
        elif parsed.given & set(_FILTER_FIELDS) | ({"window", "failed"} & parsed.given):
            current = replace(parsed, kind="list")
        else:
            current = None
    return current


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return f"{column} = {_quote(values[0])}"
    return f"{column} IN ({', '.join(_quote(v) for v in values)})"


def _ts(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def where(intent: Intent) -> list[str]:
    parts: list[str] = []
    if intent.severities:
        parts.append(_in("severity", intent.severities))
    if intent.actions:
        parts.append(_in("action", intent.actions))
    for word in intent.action_words:
        parts.append(f"action LIKE {_quote('%' + word + '%')}")
    if intent.failed and not any("FAIL" in a for a in intent.actions):
        parts.append("action LIKE '%FAIL%'")
    if intent.resource_types:
        parts.append(_in("resource_type", intent.resource_types))
    if intent.user_id is not None:
        parts.append(f"user_id = {_quote(intent.user_id)}")
    if intent.ip_address is not None:
        parts.append(f"ip_address = {_quote(intent.ip_address)}")
    if intent.metadata_key is not None:
        key = re.sub(r"[^A-Za-z0-9_-]", "", intent.metadata_key)
        parts.append(f"json_exists(metadata, '$.\"{key}\"')")
    if intent.window is not None:
        if intent.window.start is not None:
            parts.append(f'"timestamp" >= {_ts(intent.window.start)}')
        if intent.window.end is not None:
            parts.append(f'"timestamp" < {_ts(intent.window.end)}')
    return parts


def to_sql(intent: Intent) -> str:
    """The DuckDB statement answering ``intent`` over ``events``."""
    conditions = where(intent)
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    if intent.kind == "count":
        return f"SELECT count(*) AS events FROM events{clause}"
    if intent.kind == "series":
        unit = intent.group_by or "day"
        return (
            f"SELECT date_trunc('{unit}', \"timestamp\" AT TIME ZONE 'UTC') AS {unit}, count(*) AS events "
            f"FROM events{clause} GROUP BY 1 ORDER BY 1"
        )
    if intent.kind == "group":
        column = intent.group_by or "action"
        limit = f" LIMIT {intent.top}" if intent.top else ""
        return (
            f"SELECT {column}, count(*) AS events FROM events{clause} "
            f"GROUP BY {column} ORDER BY events DESC, {column}{limit}"
        )
    limit = f" LIMIT {intent.limit}" if intent.limit else ""
    return f'SELECT {", ".join(LIST_COLUMNS)} FROM events{clause} ORDER BY "timestamp" DESC, id DESC{limit}'
