"""``audit_logs_fts`` becomes a security barrier view that applies the search itself (issue 14 finding 12).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The view runs as its owner, whose ``owner_all`` policy sees every tenant, so its own
``tenant_id = auditlog_current_tenant()`` is the only thing between the API role and other tenants' rows.
Without a barrier the planner may evaluate a condition of the reading query before that one. Migration 0004
assumed the API role could not bring a leaky function of its own, but PUBLIC keeps TEMP on the database,
so it can create one in ``pg_temp``, and plenty of built-in functions leak their argument in an error.

With ``security_barrier`` the view's conditions run first and only leakproof conditions of the reading
query may be pushed below them, which ``search @@ tsquery`` is not: written in the reading query it could
no longer use the GIN index. So the search condition moves inside the view, at the barrier's own level,
taking its text from the setting ``auditlog.search`` (``db/fts.py``); the readers set it before reading.
Unset, ``websearch_to_tsquery`` gets NULL and the view is empty.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant()
    AND search @@ websearch_to_tsquery('simple', current_setting('auditlog.search', true));
"""

DOWNGRADE = """
CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = false) AS
  SELECT * FROM audit_logs WHERE tenant_id = auditlog_current_tenant();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
