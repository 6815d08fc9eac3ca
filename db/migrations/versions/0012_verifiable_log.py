"""The verifiable log: each tenant's RFC 6962 Merkle tree stored as C2SP tlog-tiles, and its signed checkpoints.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

``merkle_trees`` holds, per tenant, how many leaves (events ``seq`` 1..size) are integrated and the root at
that size; ``merkle_tiles`` the tree's hashes in the tlog-tiles layout (tile level L, index N: up to 256
hashes of Merkle level 8·L, ``width`` of them, concatenated; a partial tile is rewritten as it grows and an
older tree's partial tile is a prefix of it); ``merkle_checkpoints`` every signed checkpoint (C2SP signed
note text). The integrator writes all three in one transaction with the new size, so a crash leaves no gap
and no duplicate leaf. No proof ever reads ``audit_logs``: retention and key destruction leave the tree whole.
Tenant tables like every other (RLS enabled and forced, policy on ``auditlog_current_tenant()``).
``auditlog_merkle_pending()`` lists the tenants whose log is ahead of their tree, for the integrator's sweep
(it reveals tenant ids only).
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE merkle_trees (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
  root_hash bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE merkle_tiles (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  level smallint NOT NULL CHECK (level >= 0),
  idx bigint NOT NULL CHECK (idx >= 0),
  width smallint NOT NULL CHECK (width BETWEEN 1 AND 256),
  hashes bytea NOT NULL CHECK (octet_length(hashes) = 32 * width),
  PRIMARY KEY (tenant_id, level, idx)
);
CREATE TABLE merkle_checkpoints (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  tree_size bigint NOT NULL CHECK (tree_size >= 0),
  root_hash bytea NOT NULL,
  note text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, tree_size)
);

ALTER TABLE merkle_trees ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_trees FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON merkle_trees
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON merkle_trees TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE merkle_tiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_tiles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON merkle_tiles
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON merkle_tiles TO CURRENT_USER USING (true) WITH CHECK (true);
ALTER TABLE merkle_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON merkle_checkpoints
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON merkle_checkpoints TO CURRENT_USER USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE ON merkle_trees TO auditlog_api;
GRANT SELECT, INSERT, UPDATE ON merkle_tiles TO auditlog_api;
GRANT SELECT, INSERT ON merkle_checkpoints TO auditlog_api;

CREATE FUNCTION auditlog_merkle_pending() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT s.tenant_id FROM tenant_log_seq s LEFT JOIN merkle_trees t USING (tenant_id)
  WHERE s.last_seq > coalesce(t.size, 0)
$$;
REVOKE EXECUTE ON FUNCTION auditlog_merkle_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_merkle_pending() TO auditlog_api;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS auditlog_merkle_pending();
DROP TABLE IF EXISTS merkle_checkpoints, merkle_tiles, merkle_trees;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
