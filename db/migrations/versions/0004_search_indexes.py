"""Full-text search that can use its GIN index: the tenant-scoped view ``audit_logs_fts``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Why: under row-level security PostgreSQL only lets *leakproof* operators run before the policy, and only
such quals may become index conditions. ``tsvector @@ tsquery`` (``ts_match_vq``) is not leakproof, so for
the API role ``search @@ websearch_to_tsquery(...)`` can never use ``ix_audit_logs_search``: a rare word
meant a sequential scan of the whole tenant (22 ms at 100k events, growing linearly), while the
table owner gets a bitmap scan on the GIN index in 0.1 ms. Marking the operator leakproof needs a
superuser; the owner is not one.

``audit_logs_fts`` is a plain view owned by the owner (``security_invoker`` off, so the owner's policy
applies underneath, not the RLS barrier) that exposes exactly the current transaction's tenant:
``WHERE tenant_id = auditlog_current_tenant()`` (NULL when no tenant is set, so it is then empty). The
read path uses it only for queries with ``q``, and always adds its own ``tenant_id = $1`` too. The API
role gets SELECT on the view and nothing else.

Correction (issue 14 finding 12): this revision said the API role "cannot create functions (no CREATE on
``public``)", so the view's missing security barrier could not be exploited. That was wrong: PUBLIC keeps
TEMP on the database, so the API role can create a leaky function in ``pg_temp`` (and built-in functions
can leak their arguments in errors). Migration 0010 makes the view a security barrier and moves the search
inside it; the SQL below is left as it was applied.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

API = "auditlog_api"

UPGRADE = f"""
CREATE VIEW audit_logs_fts WITH (security_invoker = false) AS
  SELECT * FROM audit_logs WHERE tenant_id = auditlog_current_tenant();
REVOKE ALL ON audit_logs_fts FROM PUBLIC;
GRANT SELECT ON audit_logs_fts TO {API};
"""

DOWNGRADE = """
DROP VIEW IF EXISTS audit_logs_fts;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
