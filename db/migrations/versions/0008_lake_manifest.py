"""The Parquet lake's manifest and watermark, and the one way events leave PostgreSQL: archived first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

``lake_files`` lists every lake file of a tenant (path relative to the lake root, its UTC date, the seq
range and row count it holds); readers read only the live ones (``retired_at IS NULL``), so a file that is
written but not yet listed is invisible. Compaction retires the small files it replaced in the same
transaction that lists the big one; the garbage collector deletes retired files after a grace period (a
reader that took its snapshot before the swap may still be reading them). ``lake_watermarks`` holds the
highest seq in the lake. The export job lists its files and advances the watermark in ONE transaction,
after the files are durable.

``auditlog_purge_archived(before)`` removes the current tenant's events older than ``before`` that are in
the lake - the watermark covers their seq AND a live manifest file of their date covers it - and only
those: a month partition wholly before ``before`` whose every row is archived is dropped, other rows are
deleted one by one (the edges), unarchived rows stay and are counted. The API role may not DELETE from
``audit_logs``; it may call this function, which cannot remove an event the manifest does not list.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
CREATE TABLE lake_files (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  path text NOT NULL,
  date date NOT NULL,
  min_seq bigint NOT NULL,
  max_seq bigint NOT NULL,
  rows bigint NOT NULL CHECK (rows > 0),
  bytes bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  PRIMARY KEY (tenant_id, path),
  CHECK (min_seq <= max_seq)
);
CREATE INDEX ix_lake_files_live ON lake_files (tenant_id, date, min_seq, max_seq) WHERE retired_at IS NULL;

CREATE TABLE lake_watermarks (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  last_seq bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE lake_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE lake_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lake_files
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON lake_files TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE lake_watermarks ENABLE ROW LEVEL SECURITY;
ALTER TABLE lake_watermarks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lake_watermarks
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON lake_watermarks TO CURRENT_USER USING (true) WITH CHECK (true);

-- Events of the current tenant older than p_before leave PostgreSQL only if the lake holds them.
CREATE FUNCTION auditlog_purge_archived(p_before timestamptz)
  RETURNS TABLE (deleted bigint, kept bigint, dropped_partitions integer)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  t uuid := auditlog_current_tenant();
  parent text;
  wm bigint;
  part record;
  n bigint;
  unarchived bigint;
  archived_sql constant text :=
    'l.seq <= $2 AND EXISTS (SELECT 1 FROM lake_files f WHERE f.tenant_id = $1 AND f.retired_at IS NULL'
    ' AND f.date = (l."timestamp" AT TIME ZONE ''UTC'')::date AND l.seq BETWEEN f.min_seq AND f.max_seq)';
BEGIN
  deleted := 0; kept := 0; dropped_partitions := 0;
  IF t IS NULL THEN
    RAISE EXCEPTION 'auditlog_purge_archived needs a tenant bound to the transaction';
  END IF;
  parent := 'audit_logs_t_' || replace(t::text, '-', '');
  wm := coalesce((SELECT w.last_seq FROM lake_watermarks w WHERE w.tenant_id = t), 0);
  -- Whole months that end on or before p_before: drop the partition when every row is archived.
  FOR part IN
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(parent) AND c.relname ~ '_p[0-9]{{6}}$'
      AND (to_date(right(c.relname, 6), 'YYYYMM') + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= p_before
    ORDER BY c.relname
  LOOP
    EXECUTE format('LOCK TABLE %I IN SHARE ROW EXCLUSIVE MODE', part.name);
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE NOT (' || archived_sql || ')) FROM %I l', part.name)
      USING t, wm INTO n, unarchived;
    IF unarchived = 0 THEN
      EXECUTE format('DELETE FROM event_pii e USING %I l WHERE e.tenant_id = $1 AND e.event_id = l.id', part.name)
        USING t;
      EXECUTE format('DROP TABLE %I', part.name);
      deleted := deleted + n;
      dropped_partitions := dropped_partitions + 1;
    END IF;
  END LOOP;
  -- The edges (a month partly before p_before, the default partition, months with unarchived rows).
  EXECUTE 'WITH gone AS (DELETE FROM audit_logs l WHERE l.tenant_id = $1 AND l."timestamp" < $3 AND '
    || archived_sql || ' RETURNING l.id), pii AS (DELETE FROM event_pii e USING gone'
    || ' WHERE e.tenant_id = $1 AND e.event_id = gone.id) SELECT count(*) FROM gone'
    USING t, wm, p_before INTO n;
  deleted := deleted + n;
  kept := (SELECT count(*) FROM audit_logs l WHERE l.tenant_id = t AND l."timestamp" < p_before);
  RETURN NEXT;
END $$;

REVOKE ALL ON lake_files, lake_watermarks FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditlog_purge_archived(timestamptz) FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON lake_files TO {API};
GRANT UPDATE (retired_at) ON lake_files TO {API};
GRANT SELECT, INSERT, UPDATE ON lake_watermarks TO {API};
GRANT EXECUTE ON FUNCTION auditlog_purge_archived(timestamptz) TO {API};
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS auditlog_purge_archived(timestamptz);
DROP TABLE IF EXISTS lake_files, lake_watermarks;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
