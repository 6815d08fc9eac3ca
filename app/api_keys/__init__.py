"""API keys for machine clients: created and revoked by a tenant's Admin, used as bearer credentials."""
