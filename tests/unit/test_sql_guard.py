"""The SQL guard: hostile statements are refused with a reason, ordinary analytics pass, and what runs is the
checked tree re-rendered without comments (so nothing hidden in the text can run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.agent.sql_guard import MAX_SQL_CHARS, SqlRefused, check_sql

HOSTILE = {
    # host files, the lake folder, URLs
    "SELECT * FROM read_csv('/etc/passwd')": "read_csv",
    "SELECT * FROM read_csv_auto('/etc/passwd')": "read_csv",
    "SELECT * FROM read_parquet('.auditlog/lake/tenant_id=*/date=*/*.parquet')": "read_parquet",
    "SELECT * FROM 'lake/tenant_id=x/part.parquet'": "not a table here",
    "SELECT * FROM read_json('https://example.com/x.json')": "read_json",
    "SELECT * FROM read_text('/etc/hosts')": "read_text",
    "SELECT * FROM glob('/work/*')": "glob",
    "SELECT content FROM read_blob('~/.ssh/id_rsa')": "read_blob",
    "SELECT (SELECT count(*) FROM read_parquet('x.parquet')) FROM events": "read_parquet",
    "SELECT * FROM events UNION ALL SELECT * FROM read_csv('x')": "read_csv",
    "WITH x AS (SELECT * FROM read_csv('x')) SELECT * FROM x": "read_csv",
    "SELECT * FROM sniff_csv('x')": "sniff_csv",
    "SELECT * FROM parquet_metadata('x')": "parquet_metadata",
    "SELECT * FROM postgres_scan('dbname=auditlog', 'public', 'audit_logs')": "postgres_scan",
    # writing, attaching, extensions, settings
    "COPY events TO '/tmp/out.csv'": "COPY",
    "COPY (SELECT * FROM events) TO '/tmp/x.parquet' (FORMAT parquet)": "COPY",
    "ATTACH 'postgres:dbname=auditlog' AS pg (TYPE postgres)": "ATTACH",
    "ATTACH ':memory:' AS other": "ATTACH",
    "DETACH other": "",
    "INSTALL httpfs": "INSTALL",
    "LOAD httpfs": "",
    "SET enable_external_access = true": "SET",
    "SET threads TO 64": "SET",
    "RESET ALL": "",
    "PRAGMA enable_profiling": "PRAGMA",
    "PRAGMA database_list": "PRAGMA",
    "EXPORT DATABASE '/tmp/db'": "",
    "CREATE TABLE t AS SELECT * FROM events": "CREATE",
    "INSERT INTO events SELECT * FROM events": "INSERT",
    "DELETE FROM events": "DELETE",
    "DROP VIEW events": "DROP",
    "SELECT * INTO t FROM events": "INTO",
    "CALL pragma_version()": "",
    "DESCRIBE events": "DESCRIBE",
    "SUMMARIZE events": "SUMMARIZE",
    # other tenants, schemas, catalogs, settings and the environment
    "SELECT * FROM events WHERE tenant_id = '7b0c1a4e-0000-4000-8000-000000000000'": "tenant_id",
    "SELECT tenant_id, count(*) FROM events GROUP BY 1": "tenant_id",
    "SELECT * FROM other_tenant.events": "schema",
    "SELECT * FROM pg.public.audit_logs": "schema",
    "SELECT * FROM main.events": "schema",
    "SELECT * FROM information_schema.tables": "schema",
    "SELECT * FROM audit_logs": "not a table here",
    "SELECT * FROM duckdb_settings()": "duckdb_settings",
    "SELECT * FROM duckdb_tables()": "duckdb_tables",
    "SELECT * FROM duckdb_databases()": "duckdb_databases",
    "SELECT current_setting('enable_external_access')": "current_setting",
    "SELECT getenv('AUDIT_MASTER_KEY')": "getenv",
    "SELECT * FROM query('SELECT 1')": "query",
    "SELECT * FROM query_table('events')": "query_table",
    # several statements, or a statement hidden after a comment or a semicolon
    "SELECT 1 FROM events; ATTACH 'x' AS y": "exactly one statement",
    "SELECT 1 FROM events; SELECT * FROM read_csv('/etc/passwd')": "exactly one statement",
    "SELECT 1 FROM events --\n; COPY events TO 'x.csv'": "exactly one statement",
    "SELECT 1 FROM events /* */; INSTALL httpfs": "exactly one statement",
    # runaway helpers
    "SELECT * FROM range(1000000000000)": "GENERATE_SERIES",
    "SELECT count(*) FROM generate_series(1, 100000000000)": "GENERATE_SERIES",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r": "recursive",
    "SELECT sleep_ms(100000)": "sleep_ms",
    # nonsense
    "": "empty",
    "   ": "empty",
    "DROP": "",
    "SELECT FROM WHERE": "",
    "SELECT $1 FROM events": "",
}


@pytest.mark.parametrize("sql", list(HOSTILE))
def test_hostile_statements_are_refused_with_a_reason(sql: str) -> None:
    with pytest.raises(SqlRefused) as refused:
        check_sql(sql)
    reason = str(refused.value)
    assert reason
    assert HOSTILE[sql].lower() in reason.lower()


ALLOWED = [
    "SELECT count(*) FROM events",
    "SELECT action, count(*) AS n FROM events WHERE \"timestamp\" >= TIMESTAMPTZ '2025-07-01 00:00:00+00' "
    "GROUP BY action ORDER BY n DESC LIMIT 5",
    "SELECT date_trunc('day', \"timestamp\" AT TIME ZONE 'UTC') AS day, count(*) FROM events GROUP BY 1 ORDER BY 1",
    "WITH f AS (SELECT * FROM events WHERE action LIKE '%FAIL%') SELECT ip_address, count(*) FROM f GROUP BY 1",
    "SELECT metadata->>'amount' AS amount FROM events WHERE json_exists(metadata, '$.amount')",
    'SELECT user_id, row_number() OVER (PARTITION BY user_id ORDER BY "timestamp" DESC) FROM events',
    "SELECT a.id FROM events a JOIN events b USING (session_id) WHERE a.id <> b.id",
    "SELECT * FROM events WHERE severity IN ('ERROR', 'CRITICAL') ORDER BY \"timestamp\" DESC;",
    "FROM events SELECT count(*)",
    "SELECT unnest(json_keys(metadata)) AS k, count(*) FROM events GROUP BY ALL",
    "SELECT approx_count_distinct(user_id), median(length(message)) FROM events",
    "SELECT action FROM events UNION SELECT resource_type FROM events",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_analytics_statements_pass(sql: str) -> None:
    checked = check_sql(sql)
    assert checked.sql.upper().startswith(("SELECT", "WITH"))


def test_what_runs_is_the_checked_tree_without_comments() -> None:
    checked = check_sql("SELECT /* ; ATTACH 'x' AS y */ count(*) -- ; INSTALL httpfs\nFROM events")
    assert checked.sql == "SELECT COUNT(*) FROM events"
    assert "ATTACH" not in checked.sql and "--" not in checked.sql


def test_columns_read_are_known_so_the_engine_decrypts_no_more() -> None:
    assert check_sql("SELECT count(*) FROM events").columns == ("id",)
    assert check_sql("SELECT action, count(*) FROM events GROUP BY 1").columns == ("action",)
    assert check_sql("SELECT metadata->>'a' FROM events WHERE severity = 'ERROR'").columns == (
        "severity",
        "metadata",
    )
    assert check_sql("SELECT * FROM events").columns is None
    assert check_sql("SELECT e.* FROM events e").columns is None
    assert check_sql("SELECT events FROM events").columns is None
    assert check_sql("SELECT a.id FROM events a JOIN events b USING (session_id)").columns == ("id", "session_id")


def test_too_long_is_refused() -> None:
    with pytest.raises(SqlRefused, match="longer than"):
        check_sql("SELECT " + " + ".join(["1"] * MAX_SQL_CHARS) + " FROM events")


def test_the_time_window_a_statement_is_bounded_to_is_read_off_for_the_engine() -> None:
    july, end = "TIMESTAMPTZ '2025-07-01 00:00:00.000000+00'", "TIMESTAMPTZ '2025-07-25 00:00:00+02'"
    first, last = datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 24, 22, tzinfo=UTC)
    both = check_sql(f"""SELECT count(*) FROM events WHERE severity = 'ERROR' AND "timestamp" >= {july}
                         AND "timestamp" < {end}""")  # fmt: skip
    assert (both.since, both.until) == (first, last)
    flipped = check_sql(f'SELECT id FROM events e WHERE {july} <= e."timestamp" AND "timestamp" > {end}')
    assert (flipped.since, flipped.until) == (last, None)  # the tighter lower bound
    casted = check_sql("SELECT id FROM events WHERE \"timestamp\" <= '2025-07-02T00:00:00Z'::TIMESTAMPTZ")
    assert (casted.since, casted.until) == (None, datetime(2025, 7, 2, tzinfo=UTC))
    # anything that could reach rows outside the bounds: no window (the engine reads everything, as before)
    unbounded = [
        f"SELECT count(*) FROM events WHERE \"timestamp\" >= {july} OR severity = 'ERROR'",
        f'SELECT count(*) FROM events WHERE NOT ("timestamp" < {july})',
        f'SELECT (SELECT count(*) FROM events) AS n FROM events WHERE "timestamp" >= {july}',
        f'WITH e AS (SELECT * FROM events) SELECT count(*) FROM e WHERE "timestamp" >= {july}',
        f'SELECT count(*) FROM events a JOIN events b USING (id) WHERE a."timestamp" >= {july}',
        "SELECT count(*) FROM events WHERE \"timestamp\" >= TIMESTAMP '2025-07-01 00:00:00'",
        "SELECT count(*) FROM events WHERE \"timestamp\" >= TIMESTAMPTZ '2025-07-01 00:00:00'",
        f"SELECT count(*) FROM events WHERE received_at >= {july}",
        f'SELECT count(*) FROM events UNION ALL SELECT count(*) FROM events WHERE "timestamp" >= {july}',
    ]
    for sql in unbounded:
        checked = check_sql(sql)
        assert (checked.since, checked.until) == (None, None), sql
