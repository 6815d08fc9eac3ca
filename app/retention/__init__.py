"""Retention and cleanup: how long a tenant's events stay in PostgreSQL, and removing older ones (archived
to the lake first)."""
