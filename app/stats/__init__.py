"""``GET /api/v1/logs/stats``: counts of a tenant's events over a time window, through the analytics engine."""
