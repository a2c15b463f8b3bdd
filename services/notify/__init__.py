"""Notification dispatch: consent, rate limits, retries, dead letters. Built in a later issue."""
