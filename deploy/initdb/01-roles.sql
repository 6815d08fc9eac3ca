-- The two auditlog roles and the database, as db/provision.py creates them for the embedded server.
--
--   auditlog_owner  owns every object and runs the migrations (`auditlog migrate`).
--   auditlog_api    what the API and the workers log in as: owns nothing, not a superuser, cannot
--                   bypass row-level security.
--
-- Run once by a superuser (or a role with CREATEROLE and CREATEDB) with psql. The passwords come from
-- the environment of psql, so none is written here:
--
--   AUDITLOG_OWNER_PASSWORD=... AUDITLOG_API_PASSWORD=... psql "$ADMIN_URL" -f deploy/initdb/01-roles.sql
--
-- The postgres image runs it on first start (mounted into /docker-entrypoint-initdb.d by
-- docker-compose.yml, which passes both variables to the postgres container).

\set ON_ERROR_STOP on

\getenv owner_password AUDITLOG_OWNER_PASSWORD
\getenv api_password AUDITLOG_API_PASSWORD
\if :{?owner_password}
\else
  \set owner_password ''
\endif
\if :{?api_password}
\else
  \set api_password ''
\endif
SELECT :'owner_password' = '' OR :'api_password' = '' AS auditlog_passwords_missing \gset
\if :auditlog_passwords_missing
  DO $$ BEGIN RAISE EXCEPTION 'set AUDITLOG_OWNER_PASSWORD and AUDITLOG_API_PASSWORD in the environment of psql'; END $$;
\endif

CREATE ROLE auditlog_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION
  PASSWORD :'owner_password';
CREATE ROLE auditlog_api LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION
  PASSWORD :'api_password';

CREATE DATABASE auditlog OWNER auditlog_owner;

\connect auditlog
ALTER SCHEMA public OWNER TO auditlog_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC, auditlog_api;
GRANT USAGE ON SCHEMA public TO auditlog_api;
