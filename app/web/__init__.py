"""The web plumbing every route shares: errors, responses, docs, health, proxies, observability, rate limits.

Kept in one package so that capability folders (``app/logs``, ``app/stream``, ...) hold only what they own.
"""
