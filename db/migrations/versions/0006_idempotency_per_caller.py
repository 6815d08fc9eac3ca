"""Idempotency-Keys per caller: the key's scope becomes (tenant, caller, key) instead of (tenant, key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

A key was shared by every caller of a tenant, so a second caller that sent the same key and body got the
first caller's event back and its own action was never recorded (issue 14, finding 5). ``caller`` is the
user id, or the API key id for machine clients (``Principal.subject_id``), as Stripe scopes keys per
account and API key. Rows written before this revision have no known caller: they get the nil UUID, which
no caller has, so they are never replayed again and the purge job removes them within 24 h.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE idempotency_keys ADD COLUMN caller uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE idempotency_keys ALTER COLUMN caller DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, caller, key);
"""

DOWNGRADE = r"""
-- Several callers may hold one key; keep the newest row of each (tenant, key).
DELETE FROM idempotency_keys k USING idempotency_keys newer
  WHERE newer.tenant_id = k.tenant_id AND newer.key = k.key
    AND (newer.created_at, newer.caller) > (k.created_at, k.caller);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys DROP COLUMN caller;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, key);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
