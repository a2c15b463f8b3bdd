"""Kafka topic names (contracts: see DESIGN.md, "Events") and their creation."""

from __future__ import annotations

SECKILL_RESERVATIONS = "seckill.reservations"
ORDERS = "orders"
GROUPBUY = "groupbuy"
NOTIFY_DLQ = "notify.dlq"

MAIN_TOPICS = (SECKILL_RESERVATIONS, ORDERS, GROUPBUY)
DEFAULT_PARTITIONS = 6


def dlq(topic: str) -> str:
    """Dead-letter topic of a consumed topic."""
    return f"{topic}.dlq"


def all_topics() -> tuple[str, ...]:
    """Every topic the platform uses, dead-letter topics included."""
    names = [*MAIN_TOPICS, *(dlq(t) for t in MAIN_TOPICS)]
    if NOTIFY_DLQ not in names:
        names.append(NOTIFY_DLQ)
    return tuple(names)
