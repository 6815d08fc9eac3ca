"""Identity fixes: tenant look-up by name or id that never casts a name to uuid.

``auditlog_find_tenant`` from 0001 was one SQL expression ``lower(name) = lower(p_ref) OR (p_ref ~ uuid AND
id = p_ref::uuid)``; PostgreSQL does not promise to evaluate the regex test first, and once the planner
picks a BitmapOr over both indexes it casts a tenant *name* to uuid and the login fails with 22P02. The
plpgsql version below tests the shape first and only then casts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE OR REPLACE FUNCTION auditlog_find_tenant(p_ref text) RETURNS TABLE (id uuid, name text, is_platform boolean)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_ref ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
    RETURN QUERY SELECT t.id, t.name, t.is_platform FROM tenants t WHERE t.id = p_ref::uuid;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  RETURN QUERY SELECT t.id, t.name, t.is_platform FROM tenants t WHERE lower(t.name) = lower(p_ref) LIMIT 1;
END $$;
"""

DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION auditlog_find_tenant(p_ref text) RETURNS TABLE (id uuid, name text, is_platform boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.name, t.is_platform FROM tenants t
  WHERE lower(t.name) = lower(p_ref)
     OR (p_ref ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' AND t.id = p_ref::uuid)
  LIMIT 1
$$;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
