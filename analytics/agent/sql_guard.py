"""The check every model-written statement passes before it may run: model output is hostile input.

``check_sql`` parses the text with sqlglot (DuckDB dialect) and accepts exactly one read-only query:

- one statement: a ``SELECT`` (``WITH``, set operations, subqueries allowed), nothing else; no ``INTO``, no
  recursive CTE, no parameters;
- it reads only the allowed views (``events``) and its own CTEs: no schema or catalog qualifier
  (``information_schema``, another database), no quoted file names (``FROM 'x.parquet'``), no table
  functions (``read_csv``, ``glob``, ``duckdb_settings()``, ``range`` ...);
- every function is on an allow-list (aggregates, window, string, date/time, JSON, list helpers): nothing
  that reads files or the network, the environment, settings or the catalog;
- no ``tenant_id``: ``events`` holds only the caller's tenant, so a tenant can only be named to probe.

What runs is **the statement as sqlglot regenerated it**, comments dropped, never the model's text: the
engine executes exactly the tree that was checked, so a comment or a quirk that DuckDB's parser reads
differently from sqlglot's cannot smuggle a second statement past the check.

The check also reads off the time window a statement is bounded to (``CheckedSql.since``/``until``): when it
reads ``events`` once, with no subquery or CTE, and its ``WHERE`` is a conjunction bounding ``"timestamp"`` by
constants, only rows in that window can reach its result, so the engine may read only them (PostgreSQL's
index on the hot tail, the lake's day partitions). The window is always a superset; the statement's own
``WHERE`` still applies.

This is the first wall. The second is the engine's sandbox (``analytics.engine``: no external access,
configuration locked, only ``events`` registered, time and memory limits), which holds even if this
check were ever wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from analytics.schema import EVENT_COLUMNS

__all__ = ["ALLOWED_VIEWS", "MAX_SQL_CHARS", "CheckedSql", "SqlRefused", "check_sql"]

ALLOWED_VIEWS: Final = frozenset({"events"})
MAX_SQL_CHARS: Final = 8_000
MAX_NODES: Final = 3_000

# Functions by sqlglot's canonical name (``Func.sql_name()``) for the ones it knows...
_TYPED: Final = frozenset(
    """
    COUNT SUM AVG MIN MAX MEDIAN MODE STDDEV STDDEV_SAMP STDDEV_POP VARIANCE VARIANCE_POP PERCENTILE_CONT
    PERCENTILE_DISC APPROX_DISTINCT APPROX_QUANTILE ARG_MAX ARG_MIN ANY_VALUE FIRST LAST LOGICAL_AND
    LOGICAL_OR COUNT_IF GROUP_CONCAT ARRAY_AGG ROW_NUMBER RANK DENSE_RANK PERCENT_RANK CUME_DIST NTILE LAG
    LEAD FIRST_VALUE LAST_VALUE NTH_VALUE LOWER UPPER LENGTH TRIM SUBSTRING LEFT RIGHT REPLACE CONCAT
    CONCAT_WS SPLIT_PART SPLIT CONTAINS STARTS_WITH ENDS_WITH STR_POSITION PAD REPEAT REVERSE REGEXP_REPLACE
    REGEXP_EXTRACT REGEXP_EXTRACT_ALL REGEXP_LIKE REGEXP_ILIKE MD5 FORMAT ASCII CHR LEVENSHTEIN UNICODE
    NULLIF COALESCE GREATEST LEAST IF CASE ABS ROUND FLOOR CEIL SQRT LN LOG EXP SIGN TRUNC TIMESTAMP_TRUNC
    DATE_TRUNC EXTRACT DATEDIFF DATE_ADD DATE_SUB TIME_TO_STR STR_TO_TIME TIME_TO_UNIX UNIX_TO_TIME
    DATE_FROM_PARTS TIMESTAMP_FROM_PARTS DATE_BIN DAYNAME MONTHNAME YEAR MONTH DAY HOUR MINUTE SECOND WEEK
    DAY_OF_WEEK DAY_OF_YEAR DAYOFWEEK_ISO QUARTER LAST_DAY CURRENT_DATE CURRENT_TIMESTAMP TO_DAYS
    JSON_EXTRACT JSON_EXTRACT_SCALAR JSON_KEYS JSON_TYPE PARSE_JSON J_S_O_N_OBJECT J_S_O_N_ARRAY ARRAY
    ARRAY_DISTINCT ARRAY_SORT ARRAY_SIZE TRANSFORM FILTER EXPLODE FLATTEN ARRAY_TO_STRING STRUCT_EXTRACT
    STRUCT MAP_KEYS HOST TYPEOF CAST TRY_CAST EXISTS ANY ALL BOOL_AND BOOL_OR ARRAY_CONTAINS
    """.split()  # noqa: SIM905
)
# ... and by name for the ones it does not (parsed as ``Anonymous``).
_ANONYMOUS: Final = frozenset(
    """
    histogram suffix prefix like_escape hash printf jaccard strip_accents date_part datepart date_sub
    epoch_us epoch_ns make_timestamptz weekday yearweek age now get_current_timestamp to_hours to_minutes
    to_weeks to_months to_seconds to_years timezone json_value json_exists json_valid json_array_length
    json_contains json_structure to_json json_group_array json_group_object list_aggregate list_extract
    list_slice list_unique list_reverse map_values element_at cardinality inet string_agg regexp_extract_all
    array_length
    """.split()  # noqa: SIM905
)
# Statement kinds that are refused wherever they appear (also as the root).
_FORBIDDEN_NODES: Final = tuple(
    getattr(exp, name)
    for name in (
        "Command",
        "Attach",
        "Detach",
        "Copy",
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "Set",
        "Pragma",
        "Use",
        "Install",
        "Describe",
        "Summarize",
        "Transaction",
        "Commit",
        "Rollback",
        "Into",
        "Placeholder",
        "Parameter",
        "LoadData",
        "Export",
        "Grant",
        "Kill",
        "Show",
        "Pivot",
        "Unpivot",
    )
    if hasattr(exp, name)
)
_OPERATORS: Final = (exp.Binary, exp.Unary, exp.Connector, exp.Paren)


class SqlRefused(ValueError):
    """The statement was not run; the message says why (it is shown to the model and the user)."""


@dataclass(frozen=True, slots=True)
class CheckedSql:
    sql: str
    """The statement to run: sqlglot's rendering of the checked tree, without comments."""
    columns: tuple[str, ...] | None
    """The event columns it reads (``None``: all of them, e.g. for ``*``), so the engine decrypts no more."""
    since: datetime | None = None
    """Every row the statement can use has ``timestamp >= since`` (see the module docstring)."""
    until: datetime | None = None
    """Every row the statement can use has ``timestamp <= until``."""


def _root_kind(node: exp.Expr) -> str:
    return type(node).__name__.upper()


def _function_name(node: exp.Func) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name()


def _allowed_function(node: exp.Func) -> bool:
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in _ANONYMOUS
    return node.sql_name() in _TYPED


def _check_tables(tree: exp.Expression, ctes: set[str]) -> None:
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            name = _function_name(table.this) if isinstance(table.this, exp.Func) else _root_kind(table.this)
            raise SqlRefused(f"table function {name} is not allowed: query the events view")
        if table.args.get("db") or table.args.get("catalog"):
            raise SqlRefused(f"{table.sql(dialect='duckdb')}: only the events view may be read, without a schema")
        name = table.name
        if name.lower() not in ALLOWED_VIEWS and name not in ctes:
            raise SqlRefused(f"{name!r} is not a table here: only the events view may be read")


def _check_nodes(tree: exp.Expression) -> None:
    for count, node in enumerate(tree.walk(), 1):
        if count > MAX_NODES:
            raise SqlRefused("the statement is too large")
        if isinstance(node, _FORBIDDEN_NODES):
            raise SqlRefused(f"{_root_kind(node)} is not allowed: only a read-only SELECT may run")
        if isinstance(node, exp.Func) and not isinstance(node, _OPERATORS) and not _allowed_function(node):
            raise SqlRefused(f"function {_function_name(node)} is not allowed")
        if isinstance(node, exp.Column):
            if node.args.get("db") or node.args.get("catalog"):
                raise SqlRefused(f"{node.sql(dialect='duckdb')}: columns may not name a schema or catalog")
            if node.name.lower() == "tenant_id":
                raise SqlRefused("events holds only your own tenant's events; there is no tenant_id to choose")


def _columns(tree: exp.Expression) -> tuple[str, ...] | None:
    if any(not isinstance(star.parent, exp.Count) for star in tree.find_all(exp.Star)):
        return None
    names = {c.name for c in tree.find_all(exp.Column)}
    for join in tree.find_all(exp.Join):
        names |= {i.name for i in join.args.get("using") or () if isinstance(i, exp.Identifier)}
    aliases = {t.alias_or_name for t in tree.find_all(exp.Table)} | ALLOWED_VIEWS
    if names & aliases:
        return None  # ``SELECT events FROM events`` (a row as a struct) reads every column
    used = tuple(c for c in EVENT_COLUMNS if c in names)
    return used or ("id",)


def _instant(node: exp.Expression) -> datetime | None:
    """The value of a ``TIMESTAMPTZ '...'`` (or ``'...'::TIMESTAMPTZ``) literal with an explicit offset."""
    if not isinstance(node, exp.Cast) or not isinstance(node.this, exp.Literal) or not node.this.is_string:
        return None
    if not node.to.is_type(exp.DataType.Type.TIMESTAMPTZ):
        return None
    text = node.this.this.strip()
    if len(text) > 3 and text[-3] in "+-" and text[-2:].isdigit():
        text += ":00"  # DuckDB's '+00' offset form
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else None


def _is_timestamp(node: exp.Expression) -> bool:
    return isinstance(node, exp.Column) and node.name == "timestamp" and node.table in ("", "events")


def _window(tree: exp.Expression) -> tuple[datetime | None, datetime | None]:
    """(since, until) bounding every row a single-``events`` statement reads, or (None, None)."""
    if not isinstance(tree, exp.Select) or tree.args.get("with") or len(list(tree.find_all(exp.Table))) != 1:
        return None, None
    if any(node is not tree for node in tree.find_all(exp.Select)):
        return None, None
    where = tree.args.get("where")
    if where is None:
        return None, None
    since: datetime | None = None
    until: datetime | None = None
    for part in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        if not isinstance(part, exp.GT | exp.GTE | exp.LT | exp.LTE):
            continue
        left, right = part.this, part.expression
        lower = isinstance(part, exp.GT | exp.GTE)
        if _is_timestamp(right):  # constant op "timestamp": the other way round
            left, right, lower = right, left, not lower
        value = _instant(right) if _is_timestamp(left) else None
        if value is None:
            continue
        if lower:
            since = value if since is None else max(since, value)
        else:
            until = value if until is None else min(until, value)
    return since, until


def check_sql(text: str) -> CheckedSql:
    """The statement to run for ``text``, or :class:`SqlRefused` saying why it may not run."""
    if not text or not text.strip():
        raise SqlRefused("the statement is empty")
    if len(text) > MAX_SQL_CHARS:
        raise SqlRefused(f"the statement is longer than {MAX_SQL_CHARS} characters")
    try:
        parsed = sqlglot.parse(text, read="duckdb")
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as e:
        raise SqlRefused(f"the statement does not parse: {str(e).splitlines()[0][:300]}") from None
    if len(statements) != 1:
        raise SqlRefused(f"exactly one statement may run, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise SqlRefused(f"{_root_kind(tree)} is not allowed: only a read-only SELECT may run")
    ctes: set[str] = set()
    for cte in tree.find_all(exp.CTE):
        ctes.add(cte.alias_or_name)
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):
            raise SqlRefused("recursive queries are not allowed")
    _check_nodes(tree)
    _check_tables(tree, ctes)
    try:
        sql = tree.sql(dialect="duckdb", comments=False)
    except SqlglotError as e:
        raise SqlRefused(f"the statement cannot be rendered: {e}") from None
    since, until = _window(tree)
    return CheckedSql(sql=sql, columns=_columns(tree), since=since, until=until)
