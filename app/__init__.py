"""The audit log HTTP API: Litestar application, routes, auth and tenancy."""
