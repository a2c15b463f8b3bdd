"""Reconciliation of reservations (Redis) with orders (PostgreSQL): finds and repairs lost
events, reports what cannot be repaired. Run once (`make reconcile`) or as a service."""
