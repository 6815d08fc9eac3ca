"""Audit log domain: ingest-time processing of audit events."""
