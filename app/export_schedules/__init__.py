"""Scheduled exports (API.md "Scheduled exports"): every hour's or day's events delivered to the tenant's own
S3 bucket or HTTP endpoint, exactly once per closed window, by the job worker."""
