"""``audit_logs_fts`` becomes a security barrier view (issue 14 finding 12).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The view runs as its owner, whose ``owner_all`` policy sees every tenant, so its own
``tenant_id = auditlog_current_tenant()`` is the only thing between the API role and other tenants' rows.
Without a barrier the planner may evaluate a caller's condition before that one; migration 0004 assumed
the API role could not bring a leaky function of its own, but PUBLIC keeps TEMP on the database, so it can
create one in ``pg_temp`` and read other tenants' rows through its arguments. With ``security_barrier`` the
view's tenant condition runs first and only leakproof conditions may be pushed below it.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("ALTER VIEW audit_logs_fts SET (security_barrier = true);")


def downgrade() -> None:
    run_script("ALTER VIEW audit_logs_fts RESET (security_barrier);")
