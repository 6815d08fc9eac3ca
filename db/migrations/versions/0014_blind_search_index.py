"""``audit_logs.search`` becomes a keyed blind index; the search view takes a ready ``tsquery`` (issue 13).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

Until now ``search`` was ``to_tsvector('simple', message || metadata values)``: every metadata value in clear
in the heap, the GIN index and the WAL, although API.md promises ``metadata`` encrypted at rest. From this
revision the writer stores ``to_tsvector('simple', message)`` (``message`` is a plain column by contract) plus
the metadata's words only as keyed tokens under the tenant's search key, which PostgreSQL never holds
(``db.blind_index``). So PostgreSQL can no longer turn ``q`` into a query alone: ``audit_logs_fts`` now reads a
ready ``tsquery`` from ``auditlog.search``, which the application's statement computes (``db.fts``), instead of
``websearch_to_tsquery`` of ``q``.

Rows written before keep their clear ``search`` until the re-index job (``jobs.search_reindex``, run by the
worker every minute and by ``auditlog reindex-search``) rewrites it with the tenant's keys, and they stay
searchable meanwhile: a query term asks for ``phraseto_tsquery`` of its text (what matched them before) or for
its tokens.
A migration cannot do it: it has no master key. ``search_reindex`` records, per tenant, the last ``seq``
written before this revision (rows up to it are the old kind) and how far the job got (keyset on the primary
key, so it needs no other index). The job runs as the API role, which may not update ``audit_logs``
(append-only); ``auditlog_reindex_search`` lets it rewrite ``search`` only, only of the old rows of the tenant
bound to the transaction, and only until that tenant's re-index is finished.

The old values are gone from live rows once the job is done, but stay in dead row versions until (auto)vacuum
removes them, in WAL until it is recycled, and in any backup taken before. A downgrade restores the old view;
rows written since keep their tokens, so their metadata words no longer match ``q`` then.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
-- The search of the current transaction/session. A function (not an inline cast) with the cost of the
-- websearch_to_tsquery it replaces, so the planner weighs a search exactly as before: a cheap inline cast made
-- it prefer scanning the tenant's rows to the GIN index for small tenants.
CREATE FUNCTION auditlog_search_query() RETURNS tsquery
  LANGUAGE plpgsql STABLE PARALLEL SAFE COST 100 AS $$
BEGIN
  RETURN current_setting('auditlog.search', true)::tsquery;
END $$;
REVOKE EXECUTE ON FUNCTION auditlog_search_query() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_search_query() TO {API};

CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant()
    AND search @@ auditlog_search_query();

CREATE TABLE search_reindex (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  upto_seq bigint NOT NULL,
  after_ts timestamptz,
  after_id uuid,
  done_rows bigint NOT NULL DEFAULT 0,
  finished_at timestamptz
);
INSERT INTO search_reindex (tenant_id, upto_seq)
  SELECT tenant_id, last_seq FROM tenant_log_seq WHERE last_seq > 0;
ALTER TABLE search_reindex ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_reindex FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON search_reindex
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON search_reindex TO CURRENT_USER USING (true) WITH CHECK (true);
REVOKE ALL ON search_reindex FROM PUBLIC;
GRANT SELECT, UPDATE (after_ts, after_id, done_rows, finished_at) ON search_reindex TO {API};

-- The tenants whose old rows still wait for the re-index job (tenant ids only).
CREATE FUNCTION auditlog_search_reindex_pending() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT tenant_id FROM search_reindex WHERE finished_at IS NULL
$$;

-- Rewrite the search column of old rows of the current tenant (and of nothing else); returns rows rewritten.
CREATE FUNCTION auditlog_reindex_search(p_ts timestamptz[], p_ids uuid[], p_search text[]) RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  t uuid := auditlog_current_tenant();
  upto bigint;
  n integer;
BEGIN
  SELECT r.upto_seq INTO upto FROM search_reindex r WHERE r.tenant_id = t AND r.finished_at IS NULL;
  IF t IS NULL OR upto IS NULL THEN
    RETURN 0;
  END IF;
  -- EXECUTE: planned with the tenant's value, so only its partitions are touched.
  EXECUTE 'UPDATE audit_logs a SET search = u.s::tsvector FROM unnest($2, $3, $4) AS u(ts, id, s)'
          ' WHERE a.tenant_id = $1 AND a."timestamp" = u.ts AND a.id = u.id AND a.seq <= $5'
    USING t, p_ts, p_ids, p_search, upto;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
REVOKE EXECUTE ON FUNCTION auditlog_search_reindex_pending(), auditlog_reindex_search(timestamptz[], uuid[], text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_search_reindex_pending(), auditlog_reindex_search(timestamptz[], uuid[], text[])
  TO {API};
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS auditlog_reindex_search(timestamptz[], uuid[], text[]);
DROP FUNCTION IF EXISTS auditlog_search_reindex_pending();
DROP TABLE IF EXISTS search_reindex;
CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant()
    AND search @@ websearch_to_tsquery('simple', current_setting('auditlog.search', true));
DROP FUNCTION IF EXISTS auditlog_search_query();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
