"""Notification dispatch: consent, templates, rate limits, retries, dead letters."""
