"""Storage: models, migrations, the embedded PostgreSQL, the tenant-scoped session and encryption at rest."""
