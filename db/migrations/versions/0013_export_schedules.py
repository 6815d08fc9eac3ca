"""Scheduled exports (``/api/v1/export-schedules``): the schedules, every run, and log-position marks.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Tenant tables like every other (row-level security enabled and forced, a policy on
``auditlog_current_tenant()``, the owner's bypass for maintenance, only the grants the API role needs).

- ``export_schedules``: one row per schedule. The destination (its URL and credentials) and the signing secret
  are stored encrypted with the tenant's data key (``destination``, ``secret``); ``destination_display`` is
  what responses show (never a credential). ``next_window_start`` is the schedule's cursor: windows are
  delivered in order, and the cursor moves only when its window was delivered (``attempts``/``retry_at``
  pace the retries of a failing window). ``fence_at``/``fence_snapshot`` are the last closing fence: the
  transactions in progress (``pg_current_snapshot()``) at a moment past the close lag; windows ending before
  ``fence_at`` minus the lag are closed once all of them have ended.
- ``export_schedule_runs``: one row per delivery attempt (window, trigger, status, rows, bytes, error).
- ``export_seq_marks``: (time, the tenant's last log position then), taken by the scheduler every few
  minutes, so a window's events are read from a known position up (the ``seq`` index, lake files by their
  ``seq`` range) instead of scanning the tenant's whole log by ``received_at``, which has no index.

``auditlog_export_schedule_tenants()`` lists the tenants with enabled schedules for the worker's sweep (it
reveals nothing but tenant ids, which the worker role sees anyway).
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE export_schedules (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  name text NOT NULL,
  every text NOT NULL CHECK (every IN ('hour', 'day')),
  format text NOT NULL CHECK (format IN ('csv', 'ndjson', 'parquet')),
  filters jsonb NOT NULL DEFAULT '{}'::jsonb,
  destination_type text NOT NULL CHECK (destination_type IN ('s3', 'http')),
  destination_display jsonb NOT NULL,
  destination bytea NOT NULL,
  secret bytea NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  next_window_start timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  retry_at timestamptz,
  last_error text,
  last_delivered_at timestamptz,
  fence_at timestamptz,
  fence_snapshot pg_snapshot,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE TABLE export_schedule_runs (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  schedule_id uuid NOT NULL,
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  trigger text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
  attempt integer NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'delivered', 'failed')),
  rows bigint,
  bytes bigint,
  http_status integer,
  error text,
  location text,
  seq_after bigint,
  seq_through bigint,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, schedule_id) REFERENCES export_schedules (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_export_schedule_runs_schedule ON export_schedule_runs (tenant_id, schedule_id, started_at);
CREATE INDEX ix_export_schedule_runs_window ON export_schedule_runs (tenant_id, schedule_id, window_start);
CREATE TABLE export_seq_marks (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  taken_at timestamptz NOT NULL,
  last_seq bigint NOT NULL,
  PRIMARY KEY (tenant_id, taken_at)
);

ALTER TABLE export_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE export_schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON export_schedules
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON export_schedules TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE export_schedule_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE export_schedule_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON export_schedule_runs
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON export_schedule_runs TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE export_seq_marks ENABLE ROW LEVEL SECURITY;
ALTER TABLE export_seq_marks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON export_seq_marks
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON export_seq_marks TO CURRENT_USER USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON export_schedules TO auditlog_api;
GRANT SELECT, INSERT, UPDATE ON export_schedule_runs TO auditlog_api;
GRANT SELECT, INSERT, DELETE ON export_seq_marks TO auditlog_api;

CREATE FUNCTION auditlog_export_schedule_tenants() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT tenant_id FROM export_schedules WHERE enabled
$$;
REVOKE EXECUTE ON FUNCTION auditlog_export_schedule_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_export_schedule_tenants() TO auditlog_api;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS auditlog_export_schedule_tenants();
DROP TABLE IF EXISTS export_seq_marks, export_schedule_runs, export_schedules;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
