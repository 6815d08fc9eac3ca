"""Alert rules over the committed stream, their firings and every webhook delivery attempt.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

Tenant tables like every other (row-level security enabled and forced, a policy on
``auditlog_current_tenant()``, the owner's bypass for maintenance). A rule's webhook secret is stored
encrypted with the tenant's data key (``secret``), never in clear. ``last_fired_at`` is updated with a
conditional ``UPDATE`` so that, however many workers evaluate the rules, a rule fires once per cool-down.
A firing keeps the body it sends (encrypted: it carries events) so every retry sends the same bytes.
``auditlog_alert_tenants()`` lists the tenants that have enabled rules, for the worker's periodic sweep
(it reveals nothing but tenant ids, which the worker role sees anyway).
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE alert_rules (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  name text NOT NULL,
  match jsonb NOT NULL DEFAULT '{}'::jsonb,
  threshold integer NOT NULL DEFAULT 1 CHECK (threshold >= 1),
  window_seconds integer NOT NULL DEFAULT 60 CHECK (window_seconds >= 1),
  cooldown_seconds integer NOT NULL DEFAULT 300 CHECK (cooldown_seconds >= 0),
  webhook_url text NOT NULL,
  secret bytea NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_fired_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE TABLE alert_firings (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  alert_id uuid NOT NULL,
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  event_count integer NOT NULL,
  body bytea NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES alert_rules (tenant_id, id) ON DELETE CASCADE
);
CREATE TABLE alert_deliveries (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  alert_id uuid NOT NULL,
  firing_id uuid NOT NULL,
  attempt integer NOT NULL,
  status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
  http_status integer,
  error text,
  duration_ms integer,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, firing_id) REFERENCES alert_firings (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_alert_deliveries_alert ON alert_deliveries (tenant_id, alert_id, created_at);
CREATE INDEX ix_alert_firings_alert ON alert_firings (tenant_id, alert_id, created_at);

ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_rules
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON alert_rules TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE alert_firings ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_firings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_firings
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON alert_firings TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE alert_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_deliveries
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON alert_deliveries TO CURRENT_USER USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON alert_rules TO auditlog_api;
GRANT SELECT, INSERT, UPDATE ON alert_firings TO auditlog_api;
GRANT SELECT, INSERT ON alert_deliveries TO auditlog_api;

CREATE FUNCTION auditlog_alert_tenants() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT tenant_id FROM alert_rules WHERE enabled
$$;
REVOKE EXECUTE ON FUNCTION auditlog_alert_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_alert_tenants() TO auditlog_api;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS auditlog_alert_tenants();
DROP TABLE IF EXISTS alert_deliveries, alert_firings, alert_rules;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
