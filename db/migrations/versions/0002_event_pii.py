"""The PII vault of audit events: encrypted originals of the emails and phones masked at ingest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

``event_pii`` keeps, per event, one blob: the tenant-key-encrypted JSON list of findings (path, kind,
original, masked). The API role may only INSERT into it (in the ingest transaction); the only way to
read it back is ``auditlog_event_pii_get(event_id)``, a SECURITY DEFINER function limited to the current
tenant, called by the Admin-only, audited unmask route. RLS is enabled and forced like every tenant table.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
CREATE TABLE event_pii (
  tenant_id uuid NOT NULL,
  event_id uuid NOT NULL,
  findings bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX ix_event_pii_created ON event_pii (created_at);

ALTER TABLE event_pii ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_pii FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_pii
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON event_pii TO CURRENT_USER USING (true) WITH CHECK (true);

CREATE FUNCTION auditlog_event_pii_get(p_event uuid) RETURNS bytea
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT findings FROM event_pii WHERE tenant_id = auditlog_current_tenant() AND event_id = p_event
$$;

REVOKE ALL ON event_pii FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auditlog_event_pii_get(uuid) FROM PUBLIC;
GRANT INSERT ON event_pii TO {API};
GRANT EXECUTE ON FUNCTION auditlog_event_pii_get(uuid) TO {API};
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS auditlog_event_pii_get(uuid);
DROP TABLE IF EXISTS event_pii;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
