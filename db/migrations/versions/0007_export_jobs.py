"""Export jobs (``POST /api/v1/exports``): one row per requested export of a tenant's events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A tenant table like every other: row-level security enabled and forced, a policy on
``auditlog_current_tenant()``, the owner's bypass for maintenance, and only the grants the API role
needs (it creates jobs, and the SAQ task, which runs as the same role, updates their progress).
``location`` is where the finished file lives in the lake store (never returned to clients).
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE export_jobs (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
  format text NOT NULL CHECK (format IN ('csv', 'json', 'ndjson', 'parquet')),
  filters jsonb NOT NULL DEFAULT '{}'::jsonb,
  rows bigint,
  bytes bigint,
  location text,
  error text,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ix_export_jobs_created ON export_jobs (tenant_id, created_at);
ALTER TABLE export_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE export_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON export_jobs
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON export_jobs TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON export_jobs TO auditlog_api;
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS export_jobs;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
