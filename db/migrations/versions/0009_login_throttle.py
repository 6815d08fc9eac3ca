"""Login throttling per account and source, and soft-deleted users.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

``login_throttle`` counts failed password checks of a tenant in three kinds of rows: one per (account,
source address) pair, one per account (``source = '*'``) and one per source (``account = '*'``). The
account is a truncated SHA-256 of the lower-cased username, written the same way whether the user exists
or not, so the table never holds a password typed into the username box and a login for an unknown user
does the same writes as a wrong password for a real one.

``auditlog_login_reserve`` decides and counts in one transaction under row locks (``FOR UPDATE`` on the
three rows, always in the same order): an attempt is refused without a password check while its pair or
its source is locked, or while its account is locked and the pair already has a failure; otherwise it is
counted *before* the password is checked, so concurrent guesses can never run more checks than allowed.
``auditlog_login_succeeded`` refunds the successful attempt (and clears its pair when nothing else was
counted since). Both run as the API role under row-level security (``SECURITY INVOKER``).
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE login_throttle (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  account text NOT NULL,
  source text NOT NULL,
  failures integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  last_failure_at timestamptz,
  PRIMARY KEY (tenant_id, account, source)
);
ALTER TABLE login_throttle ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_throttle FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON login_throttle
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
CREATE POLICY owner_all ON login_throttle TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO auditlog_api;

ALTER TABLE users ADD COLUMN deleted_at timestamptz;

CREATE FUNCTION auditlog_login_reserve(
  p_account text, p_source text,
  p_pair_limit integer, p_account_limit integer, p_source_limit integer,
  p_base_seconds double precision, p_cap_seconds double precision,
  p_account_lock_seconds double precision, p_window_seconds double precision
) RETURNS TABLE (allowed boolean, reserved integer, locked text)
  LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  t uuid := auditlog_current_tenant();
  pair login_throttle;
  acct login_throttle;
  src login_throttle;
  stale timestamptz := now() - make_interval(secs => p_window_seconds);
  newly text[] := '{}';
BEGIN
  IF t IS NULL THEN
    RAISE EXCEPTION 'auditlog_login_reserve needs a tenant-bound transaction';
  END IF;
  INSERT INTO login_throttle (tenant_id, account, source)
    VALUES (t, p_account, p_source), (t, p_account, '*'), (t, '*', p_source)
    ON CONFLICT DO NOTHING;
  -- Always pair, account, source: concurrent attempts lock in one order and cannot deadlock.
  SELECT * INTO pair FROM login_throttle l WHERE l.tenant_id = t AND l.account = p_account AND l.source = p_source
    FOR UPDATE;
  SELECT * INTO acct FROM login_throttle l WHERE l.tenant_id = t AND l.account = p_account AND l.source = '*'
    FOR UPDATE;
  SELECT * INTO src FROM login_throttle l WHERE l.tenant_id = t AND l.account = '*' AND l.source = p_source
    FOR UPDATE;
  -- Failures forgotten after a quiet window (never while a lock holds).
  IF coalesce(pair.locked_until <= now(), true) AND pair.last_failure_at < stale THEN pair.failures := 0; END IF;
  IF coalesce(acct.locked_until <= now(), true) AND acct.last_failure_at < stale THEN acct.failures := 0; END IF;
  IF coalesce(src.locked_until <= now(), true) AND src.last_failure_at < stale THEN src.failures := 0; END IF;
  IF pair.locked_until > now() OR src.locked_until > now() OR (acct.locked_until > now() AND pair.failures > 0) THEN
    RETURN QUERY SELECT false, pair.failures, NULL::text;
    RETURN;
  END IF;
  pair.failures := pair.failures + 1;
  acct.failures := acct.failures + 1;
  src.failures := src.failures + 1;
  IF pair.failures >= p_pair_limit THEN
    pair.locked_until := now() + make_interval(
      secs => least(p_base_seconds * power(2, pair.failures - p_pair_limit), p_cap_seconds));
    newly := array_append(newly, 'pair');
  END IF;
  IF acct.failures >= p_account_limit AND coalesce(acct.locked_until <= now(), true) THEN
    acct.locked_until := now() + make_interval(secs => p_account_lock_seconds);
    newly := array_append(newly, 'account');
  END IF;
  IF src.failures >= p_source_limit THEN
    src.locked_until := now() + make_interval(
      secs => least(p_base_seconds * power(2, src.failures - p_source_limit), p_cap_seconds));
    newly := array_append(newly, 'source');
  END IF;
  UPDATE login_throttle l SET failures = pair.failures, locked_until = pair.locked_until, last_failure_at = now()
    WHERE l.tenant_id = t AND l.account = p_account AND l.source = p_source;
  UPDATE login_throttle l SET failures = acct.failures, locked_until = acct.locked_until, last_failure_at = now()
    WHERE l.tenant_id = t AND l.account = p_account AND l.source = '*';
  UPDATE login_throttle l SET failures = src.failures, locked_until = src.locked_until, last_failure_at = now()
    WHERE l.tenant_id = t AND l.account = '*' AND l.source = p_source;
  RETURN QUERY SELECT true, pair.failures, nullif(array_to_string(newly, ','), '');
END $$;

CREATE FUNCTION auditlog_login_succeeded(p_account text, p_source text, p_reserved integer, p_pair_limit integer)
  RETURNS void LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  t uuid := auditlog_current_tenant();
BEGIN
  -- Nothing counted on the pair since this attempt: the owner is back, the pair starts afresh. Otherwise
  -- (concurrent attempts) only this attempt is refunded: the others were checked and stay counted.
  DELETE FROM login_throttle l WHERE l.tenant_id = t AND l.account = p_account AND l.source = p_source
    AND l.failures <= p_reserved;
  UPDATE login_throttle l SET failures = greatest(l.failures - 1, 0),
      locked_until = CASE WHEN l.failures - 1 < p_pair_limit THEN NULL ELSE l.locked_until END
    WHERE l.tenant_id = t AND l.account = p_account AND l.source = p_source;
  UPDATE login_throttle l SET failures = greatest(l.failures - 1, 0)
    WHERE l.tenant_id = t AND ((l.account = p_account AND l.source = '*') OR (l.account = '*' AND l.source = p_source));
END $$;

REVOKE EXECUTE ON FUNCTION auditlog_login_reserve(text, text, integer, integer, integer, double precision,
  double precision, double precision, double precision), auditlog_login_succeeded(text, text, integer, integer)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_login_reserve(text, text, integer, integer, integer, double precision,
  double precision, double precision, double precision), auditlog_login_succeeded(text, text, integer, integer)
  TO auditlog_api;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS auditlog_login_succeeded(text, text, integer, integer);
DROP FUNCTION IF EXISTS auditlog_login_reserve(text, text, integer, integer, integer, double precision,
  double precision, double precision, double precision);
DROP TABLE IF EXISTS login_throttle;
ALTER TABLE users DROP COLUMN IF EXISTS deleted_at;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
