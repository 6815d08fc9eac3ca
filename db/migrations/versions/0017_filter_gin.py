"""Fewer indexes per event (issue 13 §2): one GIN over the filter columns instead of seven B-trees.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

Every event wrote thirteen indexes of ``audit_logs``. Measured with ``bench/bench_indexes.py`` (100,000 rows
COPYed onto 1M, README "Indexes"): each single-filter B-tree added about 600-1,050 bytes of WAL and several µs
of PostgreSQL CPU per row, and all of them together about 33 KB of WAL and 180 µs of CPU per row against 1.5 KB
and 16 µs for the primary key and the ``id`` index alone, because the indexes outgrow ``shared_buffers`` and the
WAL they make brings checkpoints, after which every page touched is written whole again.

What each page needs (same bench, 1M events, without the filter's index):

- ``user_id``: a user has ~0.2 % of the events; walking the time order to find 51 of them took ~0.4 s, so
  ``(user_id, "timestamp", id)`` stays (a target page).
- ``resource_type`` + ``severity``: the two-filter page of the read target; ``(resource_type, severity,
  "timestamp", id)`` stays, and serves ``resource_type`` alone through a bitmap when a type is rare.
- ``action``, ``resource_type``, ``severity`` alone: a common value is found by walking the primary key in time
  order (a few hundred rows for 50 events), so their B-trees go; a rare value is found through the GIN below.
- ``resource_id``, ``session_id``, ``request_id``, ``ip_address``: values are rare, so without an index the page
  read the whole tenant (2-11 s at 1M). One GIN (``btree_gin`` operator classes, so the plain ``column = $n``
  conditions use it unchanged) over these and the three low-cardinality columns replaces their seven B-trees:
  a bitmap of the few matching rows, then a sort of those. Its pending list (``fastupdate``, the default) turns
  each insert into an append; the list is merged in bulk when it fills or by (auto)vacuum.

``id`` (``GET /logs/{id}``, UUIDv7: appended in order), ``seq`` (the stream, alerts, the lake export and the
verifiable log read by ``seq``; appended in order) and the search GIN stay. BRIN on ``"timestamp"`` or ``seq``
would cost nearly nothing but replaces nothing: pages need the order the primary key gives, and a BRIN range
covering the newest rows is unsummarised until vacuum.

``CREATE INDEX`` on the partitioned table builds every partition's index under a lock that holds writers off
for the build; on a large installation build per partition ``CONCURRENTLY`` and ``ATTACH`` instead.
"""

from __future__ import annotations

from db.sqlscript import run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX IF EXISTS ix_audit_logs_action;
DROP INDEX IF EXISTS ix_audit_logs_severity;
DROP INDEX IF EXISTS ix_audit_logs_resource_type;
DROP INDEX IF EXISTS ix_audit_logs_resource_id;
DROP INDEX IF EXISTS ix_audit_logs_session;
DROP INDEX IF EXISTS ix_audit_logs_request;
DROP INDEX IF EXISTS ix_audit_logs_ip;
CREATE INDEX ix_audit_logs_filters ON audit_logs
  USING gin (action, resource_type, severity, resource_id, session_id, request_id, ip_address);
"""

DOWNGRADE = """
DROP INDEX IF EXISTS ix_audit_logs_filters;
CREATE INDEX ix_audit_logs_action ON audit_logs (action, "timestamp", id);
CREATE INDEX ix_audit_logs_severity ON audit_logs (severity, "timestamp", id);
CREATE INDEX ix_audit_logs_resource_type ON audit_logs (resource_type, "timestamp", id);
CREATE INDEX ix_audit_logs_resource_id ON audit_logs (resource_id, "timestamp", id) WHERE resource_id IS NOT NULL;
CREATE INDEX ix_audit_logs_session ON audit_logs (session_id, "timestamp", id) WHERE session_id IS NOT NULL;
CREATE INDEX ix_audit_logs_request ON audit_logs (request_id, "timestamp", id) WHERE request_id IS NOT NULL;
CREATE INDEX ix_audit_logs_ip ON audit_logs (ip_address, "timestamp", id) WHERE ip_address IS NOT NULL;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
