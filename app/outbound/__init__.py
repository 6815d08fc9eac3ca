"""Requests the service sends out (alert webhooks, scheduled-export destinations): address rules and signing."""
