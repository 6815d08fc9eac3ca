"""The lake rollups' hourly counts move to a table of their own (``lake_rollup_hours``, 4-byte counts).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

``lake_rollups`` keeps one narrow row per (tenant, UTC day, action, severity, resource type) and its ``events``:
what a count over whole days reads (a 30-day window of a tenant with a few hundred kinds of event reads some
twenty thousand of them). ``lake_rollup_hours`` holds the same keys with the day's 24 hourly counts, read only
for the first and last day of a window and for hourly series. Both are written in the export's manifest
transaction; the counts move over unchanged.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
CREATE TABLE lake_rollup_hours (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  day date NOT NULL,
  action text NOT NULL,
  severity text NOT NULL,
  resource_type text NOT NULL,
  hours integer[] NOT NULL CHECK (cardinality(hours) = 24),
  PRIMARY KEY (tenant_id, day, action, severity, resource_type)
);
INSERT INTO lake_rollup_hours (tenant_id, day, action, severity, resource_type, hours)
SELECT tenant_id, day, action, severity, resource_type, hours::integer[] FROM lake_rollups;
ALTER TABLE lake_rollups DROP COLUMN hours;
CLUSTER lake_rollups USING lake_rollups_pkey;  -- rewritten without the arrays, in key order
ALTER TABLE lake_rollup_hours ENABLE ROW LEVEL SECURITY;
ALTER TABLE lake_rollup_hours FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lake_rollup_hours
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON lake_rollup_hours TO CURRENT_USER USING (true) WITH CHECK (true);
REVOKE ALL ON lake_rollup_hours FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON lake_rollup_hours TO {API};
"""

DOWNGRADE = """
ALTER TABLE lake_rollups ADD COLUMN hours bigint[];
UPDATE lake_rollups r SET hours = h.hours::bigint[] FROM lake_rollup_hours h
WHERE (h.tenant_id, h.day, h.action, h.severity, h.resource_type)
    = (r.tenant_id, r.day, r.action, r.severity, r.resource_type);
ALTER TABLE lake_rollups ALTER COLUMN hours SET NOT NULL;
DROP TABLE IF EXISTS lake_rollup_hours;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
