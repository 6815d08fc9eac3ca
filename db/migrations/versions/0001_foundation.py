"""Foundation schema: tenants, identity, the partitioned audit log, vaults, RLS, grants and triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

API = "auditlog_api"

# Every table that holds a tenant's rows; each gets RLS enabled+forced and the isolation policy.
TENANT_TABLES = (
    "users",
    "sessions",
    "refresh_tokens",
    "api_keys",
    "audit_logs",
    "tenant_log_seq",
    "idempotency_keys",
    "conversations",
    "conversation_messages",
    "mask_users",
    "tenant_keys",
)

UPGRADE = r"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_api') THEN
    CREATE ROLE auditlog_api NOLOGIN;
  END IF;
END $$;

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The tenant of the current transaction; NULL when none is set, so a query without a tenant sees nothing.
CREATE FUNCTION auditlog_current_tenant() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$ SELECT NULLIF(current_setting('auditlog.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 128),
  created_at timestamptz NOT NULL DEFAULT now(),
  retention_days integer CHECK (retention_days BETWEEN 1 AND 3650),
  is_platform boolean NOT NULL DEFAULT false
);
-- tenants is a reference table (replicated on Citus), so its global name index is allowed to lead with name.
CREATE UNIQUE INDEX uq_tenants_name ON tenants (lower(name));

CREATE TABLE users (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  username text NOT NULL CHECK (char_length(username) BETWEEN 1 AND 128),
  role text NOT NULL CHECK (role IN ('Operator', 'Admin', 'User', 'Auditor')),
  email text,
  phone text,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  failed_logins integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  disabled_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX uq_users_username ON users (tenant_id, lower(username));

CREATE TABLE sessions (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  user_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE refresh_tokens (
  tenant_id uuid NOT NULL,
  token_hash bytea NOT NULL,
  session_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  spent_at timestamptz,
  PRIMARY KEY (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE api_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  public_id text NOT NULL,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 128),
  role text NOT NULL CHECK (role IN ('User', 'Auditor')),
  key_hash bytea NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  last_used_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX uq_api_keys_public_id ON api_keys (tenant_id, public_id);
CREATE INDEX ix_api_keys_public_id ON api_keys (public_id);

-- Per-tenant commit order: the row lock serialises a tenant's writers, so seq order is commit order.
CREATE TABLE tenant_log_seq (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  last_seq bigint NOT NULL DEFAULT 0
);

-- The audit log: LIST-partitioned by tenant, each tenant RANGE-partitioned by month of "timestamp",
-- so old data leaves with DROP TABLE, not a full-table DELETE. No FK to tenants (partition DDL stays cheap).
CREATE TABLE audit_logs (
  tenant_id uuid NOT NULL,
  "timestamp" timestamptz NOT NULL,
  id uuid NOT NULL,
  seq bigint NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  action text NOT NULL,
  resource_type text NOT NULL,
  resource_id text,
  user_id text,
  session_id text,
  request_id text,
  severity text NOT NULL DEFAULT 'INFO' CHECK (severity IN ('INFO', 'WARNING', 'ERROR', 'CRITICAL')),
  ip_address inet,
  user_agent text,
  message text,
  payload bytea,
  search tsvector,
  PRIMARY KEY (tenant_id, "timestamp", id)
) PARTITION BY LIST (tenant_id);
-- Secondary indexes live per tenant partition (tenant_id is constant there): each serves one filter
-- in keyset order ("timestamp" desc, id desc).
CREATE INDEX ix_audit_logs_id ON audit_logs (id);
CREATE INDEX ix_audit_logs_seq ON audit_logs (seq);
CREATE INDEX ix_audit_logs_user ON audit_logs (user_id, "timestamp", id);
CREATE INDEX ix_audit_logs_action ON audit_logs (action, "timestamp", id);
CREATE INDEX ix_audit_logs_resource ON audit_logs (resource_type, resource_id, "timestamp", id);
CREATE INDEX ix_audit_logs_resource_id ON audit_logs (resource_id, "timestamp", id) WHERE resource_id IS NOT NULL;
CREATE INDEX ix_audit_logs_severity ON audit_logs (severity, "timestamp", id);
CREATE INDEX ix_audit_logs_session ON audit_logs (session_id, "timestamp", id) WHERE session_id IS NOT NULL;
CREATE INDEX ix_audit_logs_request ON audit_logs (request_id, "timestamp", id) WHERE request_id IS NOT NULL;
CREATE INDEX ix_audit_logs_ip ON audit_logs (ip_address, "timestamp", id) WHERE ip_address IS NOT NULL;
CREATE INDEX ix_audit_logs_search ON audit_logs USING gin (search);

CREATE TABLE idempotency_keys (
  tenant_id uuid NOT NULL,
  key text NOT NULL,
  request_hash bytea NOT NULL,
  response bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE conversations (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  user_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE conversation_messages (
  tenant_id uuid NOT NULL,
  conversation_id uuid NOT NULL,
  id uuid NOT NULL,
  role text NOT NULL CHECK (role IN ('user', 'assistant')),
  content text NOT NULL,
  sql text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, conversation_id, id),
  FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

-- The PII vault for users: originals of masked emails and phones (no FK to users: the BEFORE trigger
-- writes it first). The API role may write through auditlog_vault_put() but never read it directly.
CREATE TABLE mask_users (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  field text NOT NULL CHECK (field IN ('email', 'phone')),
  value bytea NOT NULL,
  encrypted boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id, field)
);

-- Per-tenant data keys, wrapped by the master key; the highest key_id that is not retired encrypts.
CREATE TABLE tenant_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  key_id integer NOT NULL,
  wrapped_key bytea NOT NULL,
  master_key_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  PRIMARY KEY (tenant_id, key_id)
);

-- Masking helpers, also used by the users trigger.
CREATE FUNCTION auditlog_mask_email(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NULL THEN NULL ELSE
    left(split_part(v, '@', 1), 1) || '***@' || left(split_part(v, '@', 2), 1) || '***.'
    || regexp_replace(split_part(v, '@', 2), '^.*\.', '') END
$$;
CREATE FUNCTION auditlog_mask_phone(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NULL THEN NULL
    ELSE regexp_replace(left(v, -2), '[0-9]', '*', 'g') || right(v, 2) END
$$;

-- Guarantee: no raw email or phone is ever stored in users, even if application code forgets.
-- A raw value is moved to the vault (unencrypted: the database has no key) and masked in place.
CREATE FUNCTION auditlog_users_mask_pii() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF NEW.email IS NOT NULL AND NEW.email ~ '[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}' THEN
    INSERT INTO mask_users (tenant_id, user_id, field, value, encrypted)
    VALUES (NEW.tenant_id, NEW.id, 'email', convert_to(NEW.email, 'UTF8'), false)
    ON CONFLICT (tenant_id, user_id, field) DO UPDATE SET value = EXCLUDED.value, encrypted = false,
      created_at = now();
    NEW.email := auditlog_mask_email(NEW.email);
  END IF;
  IF NEW.phone IS NOT NULL AND NEW.phone ~ '[0-9]{3,}' THEN
    INSERT INTO mask_users (tenant_id, user_id, field, value, encrypted)
    VALUES (NEW.tenant_id, NEW.id, 'phone', convert_to(NEW.phone, 'UTF8'), false)
    ON CONFLICT (tenant_id, user_id, field) DO UPDATE SET value = EXCLUDED.value, encrypted = false,
      created_at = now();
    NEW.phone := auditlog_mask_phone(NEW.phone);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER trg_users_mask_pii BEFORE INSERT OR UPDATE OF email, phone ON users
  FOR EACH ROW EXECUTE FUNCTION auditlog_users_mask_pii();

-- Vault write for the application (encrypted originals); reads go through auditlog_vault_get().
CREATE FUNCTION auditlog_vault_put(p_user uuid, p_field text, p_value bytea) RETURNS void
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  INSERT INTO mask_users (tenant_id, user_id, field, value, encrypted)
  SELECT t, p_user, p_field, p_value, true FROM (SELECT auditlog_current_tenant() AS t) s WHERE t IS NOT NULL
  ON CONFLICT (tenant_id, user_id, field) DO UPDATE SET value = EXCLUDED.value, encrypted = true,
    created_at = now()
$$;
CREATE FUNCTION auditlog_vault_get(p_user uuid)
  RETURNS TABLE (field text, value bytea, encrypted boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT field, value, encrypted FROM mask_users
  WHERE tenant_id = auditlog_current_tenant() AND user_id = p_user
$$;

-- Partitions: a tenant partition (by month, bounds at UTC midnight), its default partition, and the months
-- from p_from on. Rows of a month that arrived before its partition existed (back-filled events) sit in the
-- default partition; creating that month moves them into the new partition, under a lock that holds off
-- writers of the default partition for the moment it takes.
CREATE FUNCTION auditlog_ensure_partitions(p_tenant uuid, p_from date, p_months integer) RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  parent text := 'audit_logs_t_' || replace(p_tenant::text, '-', '');
  dflt text := 'audit_logs_t_' || replace(p_tenant::text, '-', '') || '_default';
  m date := date_trunc('month', p_from)::date;
  lo timestamptz;
  hi timestamptz;
  part text;
  waiting boolean;
  created integer := 0;
BEGIN
  IF to_regclass(parent) IS NULL THEN
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_logs FOR VALUES IN (%L) PARTITION BY RANGE ("timestamp")',
                   parent, p_tenant);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', dflt, parent);
    created := created + 1;
  END IF;
  FOR i IN 0 .. greatest(p_months, 1) - 1 LOOP
    part := parent || '_p' || to_char(m, 'YYYYMM');
    lo := m::timestamp AT TIME ZONE 'UTC';
    hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    IF to_regclass(part) IS NULL THEN
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE "timestamp" >= %L AND "timestamp" < %L)', dflt, lo, hi)
        INTO waiting;
      IF waiting THEN
        EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', dflt);
        EXECUTE format('CREATE TABLE %I (LIKE audit_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE "timestamp" >= %L AND "timestamp" < %L RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved', dflt, lo, hi, part);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
      ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', part, parent, lo, hi);
      END IF;
      created := created + 1;
    END IF;
    m := (m + interval '1 month')::date;
  END LOOP;
  RETURN created;
END $$;

-- Creating a tenant creates its partitions and its sequence row in the same transaction.
CREATE FUNCTION auditlog_create_tenant(p_id uuid, p_name text, p_platform boolean DEFAULT false)
  RETURNS TABLE (id uuid, name text, created_at timestamptz)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO tenants (id, name, is_platform) VALUES (p_id, p_name, p_platform);
  INSERT INTO tenant_log_seq (tenant_id) VALUES (p_id);
  PERFORM auditlog_ensure_partitions(p_id, (now() AT TIME ZONE 'UTC')::date, 3);
  RETURN QUERY SELECT t.id, t.name, t.created_at FROM tenants t WHERE t.id = p_id;
END $$;

-- Look-ups that happen before the tenant is known (login, API keys, operator views).
CREATE FUNCTION auditlog_find_tenant(p_ref text) RETURNS TABLE (id uuid, name text, is_platform boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.name, t.is_platform FROM tenants t
  WHERE lower(t.name) = lower(p_ref)
     OR (p_ref ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' AND t.id = p_ref::uuid)
  LIMIT 1
$$;
CREATE FUNCTION auditlog_list_tenants()
  RETURNS TABLE (id uuid, name text, created_at timestamptz, retention_days integer, is_platform boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.name, t.created_at, t.retention_days, t.is_platform FROM tenants t ORDER BY t.created_at, t.id
$$;
CREATE FUNCTION auditlog_find_api_key(p_public_id text)
  RETURNS TABLE (tenant_id uuid, id uuid, role text, key_hash bytea, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT k.tenant_id, k.id, k.role, k.key_hash, k.revoked_at FROM api_keys k WHERE k.public_id = p_public_id
$$;
CREATE FUNCTION auditlog_recent_revocations(p_since timestamptz)
  RETURNS TABLE (kind text, id uuid, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT 'session', s.id, s.revoked_at FROM sessions s WHERE s.revoked_at >= p_since
  UNION ALL
  SELECT 'api_key', k.id, k.revoked_at FROM api_keys k WHERE k.revoked_at >= p_since
$$;
CREATE FUNCTION auditlog_all_tenant_ids() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$ SELECT id FROM tenants $$;

-- A schema for the job queue's own tables (SAQ creates them on first use).
CREATE SCHEMA IF NOT EXISTS jobs;
GRANT USAGE, CREATE ON SCHEMA jobs TO auditlog_api;
"""


def _rls(table: str) -> str:
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {table}
  USING (tenant_id = auditlog_current_tenant()) WITH CHECK (tenant_id = auditlog_current_tenant());
-- The owner runs SECURITY DEFINER functions and jobs that span tenants; the API role never does.
CREATE POLICY owner_all ON {table} TO CURRENT_USER USING (true) WITH CHECK (true);
"""


GRANTS = f"""
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = auditlog_current_tenant());
CREATE POLICY owner_all ON tenants TO CURRENT_USER USING (true) WITH CHECK (true);

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_current_tenant(), auditlog_mask_email(text), auditlog_mask_phone(text),
  auditlog_vault_put(uuid, text, bytea), auditlog_vault_get(uuid), auditlog_ensure_partitions(uuid, date, integer),
  auditlog_create_tenant(uuid, text, boolean), auditlog_find_tenant(text), auditlog_list_tenants(),
  auditlog_find_api_key(text), auditlog_recent_revocations(timestamptz), auditlog_all_tenant_ids()
  TO {API};
GRANT SELECT, UPDATE (retention_days) ON tenants TO {API};
GRANT SELECT, INSERT, UPDATE, DELETE ON users, sessions, refresh_tokens, api_keys, idempotency_keys,
  conversations, conversation_messages TO {API};
GRANT SELECT, INSERT ON tenant_keys TO {API};
GRANT UPDATE (retired_at) ON tenant_keys TO {API};
GRANT SELECT, UPDATE ON tenant_log_seq TO {API};
-- The audit log is append-only for the API: no UPDATE; deletion only through the retention job.
GRANT SELECT, INSERT ON audit_logs TO {API};
"""

DOWNGRADE = """
DROP SCHEMA IF EXISTS jobs CASCADE;
DROP TABLE IF EXISTS conversation_messages, conversations, idempotency_keys, audit_logs, tenant_log_seq,
  api_keys, refresh_tokens, sessions, mask_users, users, tenant_keys, tenants CASCADE;
DROP FUNCTION IF EXISTS auditlog_all_tenant_ids(), auditlog_recent_revocations(timestamptz),
  auditlog_find_api_key(text), auditlog_list_tenants(), auditlog_find_tenant(text),
  auditlog_create_tenant(uuid, text, boolean), auditlog_ensure_partitions(uuid, date, integer),
  auditlog_vault_get(uuid), auditlog_vault_put(uuid, text, bytea), auditlog_users_mask_pii(),
  auditlog_mask_phone(text), auditlog_mask_email(text), auditlog_current_tenant();
"""


def upgrade() -> None:
    run_script(UPGRADE)
    for table in TENANT_TABLES:
        run_script(_rls(table))
    run_script(GRANTS)


def downgrade() -> None:
    run_script(DOWNGRADE)
