"""The service's own events: reads (``app.read_audit``) and administrative actions recorded in the tenant's log."""
