"""Hourly counts of each tenant's lake events (``lake_rollups``), written by the lake export with its manifest.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

``lake_rollups`` holds, per tenant, UTC day, action, severity and resource type, how many lake events there
are (``events``) and how many in each hour of that day (``hours``, 24 counts). The export adds a run's counts
in the transaction that lists its files and moves the watermark, so the rollups always count exactly the lake
up to its watermark; ``GET /logs/stats`` adds the events above the watermark from ``audit_logs``
(``analytics.window_counts``). A tenant table like every other (RLS enabled and forced).

``lake_watermarks.rollup_from``: the lake's events with ``seq <= rollup_from`` are not in the rollups yet. Lakes
written before this revision start with ``rollup_from = last_seq``; the exporter counts them once from the lake
files and sets it to 0 (``analytics.lake.rollups.backfill_rollups``). New lakes start at 0.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
CREATE TABLE lake_rollups (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  day date NOT NULL,
  action text NOT NULL,
  severity text NOT NULL,
  resource_type text NOT NULL,
  events bigint NOT NULL CHECK (events >= 0),
  hours bigint[] NOT NULL CHECK (cardinality(hours) = 24),
  PRIMARY KEY (tenant_id, day, action, severity, resource_type)
);
ALTER TABLE lake_rollups ENABLE ROW LEVEL SECURITY;
ALTER TABLE lake_rollups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lake_rollups
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON lake_rollups TO CURRENT_USER USING (true) WITH CHECK (true);
REVOKE ALL ON lake_rollups FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON lake_rollups TO {API};

ALTER TABLE lake_watermarks ADD COLUMN rollup_from bigint NOT NULL DEFAULT 0 CHECK (rollup_from >= 0);
UPDATE lake_watermarks SET rollup_from = last_seq;
"""

DOWNGRADE = """
ALTER TABLE lake_watermarks DROP COLUMN IF EXISTS rollup_from;
DROP TABLE IF EXISTS lake_rollups;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
