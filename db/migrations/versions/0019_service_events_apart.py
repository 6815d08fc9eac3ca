"""The service's own events kept out of the tenant's time order (issue 13 §3), with no more indexes per event.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

Every read writes a ``VIEW`` record (the read audit), stamped now, so after a while of reading, the newest rows of
a tenant are mostly its own read records. Pages that leave the service's events out (every default read: API.md
"Reading is audited") walked the primary key ``(tenant_id, "timestamp", id)`` in time order and stepped over all
of them: a ``q`` page after ~40,000 reads read 3,700 buffers instead of 120 (README, "Ingest and reads").

Each event still writes two B-trees, but they are now:

- the primary key ``(tenant_id, id, "timestamp")``: finds an event by id (``GET /logs/{id}``), which the separate
  ``ix_audit_logs_id`` did; ids are UUIDv7, so it is appended in order. ``"timestamp"`` is in it only because a
  partitioned table's key must hold the partition columns;
- one of two partial ``("timestamp", id)`` indexes (``tenant_id`` is constant in a partition): the tenant's own
  events (``ix_audit_logs_time``) or the service's (``ix_audit_logs_service_time``). A default page walks the
  first and never sees a read record; ``include_system`` pages merge both in order (``app.logs.query``).

The search GIN is split the same way (``ix_audit_logs_search`` over the tenant's own events,
``ix_audit_logs_service_search`` over the service's), and so is its security-barrier view: ``audit_logs_fts``
now reads only the tenant's own events and ``audit_logs_fts_service`` the service's (``db.fts.search_source``).
A read record holds the words of the search it records (``q`` in its metadata, as blind-index tokens), so every
search of a word added one more match of that word to the one GIN: after a few thousand searches of a rare word
its GIN page read thousands of read records only to drop them (the ``NOT`` service condition is not leakproof,
so it could not reach inside the view's barrier; it has to be in the view).

The two predicates are ``db.event_filters.SERVICE_EVENTS_SQL`` written out: the planner uses a partial index only
when the query's condition is the same expression, which ``tests/integration/test_filter_indexes.py`` checks.

Rebuilding the primary key and building the partial indexes lock writers out of ``audit_logs`` while they run; on
a large installation build per partition ``CONCURRENTLY`` and ``ATTACH`` instead. A re-index of ``search``
(migration 0014) still in progress restarts from its beginning: its position was in the old time order.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

API = "auditlog_api"
SERVICE = "(resource_type IN ('audit_log', 'audit_log_pii') OR lower(resource_type) LIKE 'auditlog.%')"

UPGRADE = f"""
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_pkey;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_pkey PRIMARY KEY (tenant_id, id, "timestamp");
DROP INDEX IF EXISTS ix_audit_logs_id;
CREATE INDEX ix_audit_logs_time ON audit_logs ("timestamp", id) WHERE NOT {SERVICE};
CREATE INDEX ix_audit_logs_service_time ON audit_logs ("timestamp", id) WHERE {SERVICE};
UPDATE search_reindex SET after_ts = NULL, after_id = NULL WHERE finished_at IS NULL;
DROP INDEX IF EXISTS ix_audit_logs_search;
CREATE INDEX ix_audit_logs_search ON audit_logs USING gin (search) WHERE NOT {SERVICE};
CREATE INDEX ix_audit_logs_service_search ON audit_logs USING gin (search) WHERE {SERVICE};
CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant() AND search @@ auditlog_search_query() AND NOT {SERVICE};
CREATE VIEW audit_logs_fts_service WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant() AND search @@ auditlog_search_query() AND {SERVICE};
REVOKE ALL ON audit_logs_fts_service FROM PUBLIC;
GRANT SELECT ON audit_logs_fts_service TO {API};
"""

DOWNGRADE = """
DROP VIEW IF EXISTS audit_logs_fts_service;
CREATE OR REPLACE VIEW audit_logs_fts WITH (security_invoker = false, security_barrier = true) AS
  SELECT * FROM audit_logs
  WHERE tenant_id = auditlog_current_tenant() AND search @@ auditlog_search_query();
DROP INDEX IF EXISTS ix_audit_logs_search;
DROP INDEX IF EXISTS ix_audit_logs_service_search;
CREATE INDEX ix_audit_logs_search ON audit_logs USING gin (search);
DROP INDEX IF EXISTS ix_audit_logs_time;
DROP INDEX IF EXISTS ix_audit_logs_service_time;
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_pkey;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_pkey PRIMARY KEY (tenant_id, "timestamp", id);
CREATE INDEX ix_audit_logs_id ON audit_logs (id);
UPDATE search_reindex SET after_ts = NULL, after_id = NULL WHERE finished_at IS NULL;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
