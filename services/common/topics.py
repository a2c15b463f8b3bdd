"""Kafka topic names (contracts: see DESIGN.md, "Events") and their creation."""

from __future__ import annotations

SECKILL_RESERVATIONS = "seckill.reservations"
ORDERS = "orders"
GROUPBUY = "groupbuy"
NOTIFY_DLQ = "notify.dlq"

MAIN_TOPICS = (SECKILL_RESERVATIONS, ORDERS, GROUPBUY)
# What ensure_topics creates a missing topic with (make up, tests, the bootstrap step).
DEFAULT_PARTITIONS = 6
# Partitions in production (deploy/k8s/base/kafka.yaml; tests/deploy keeps both equal). A
# consumer group gives each partition to one member, so consumer replicas beyond the
# partitions of what they consume sit idle: autoscalers stop there.
PARTITIONS = {SECKILL_RESERVATIONS: 12, ORDERS: 12, GROUPBUY: 6}
DLQ_PARTITIONS = 3


def dlq(topic: str) -> str:
    """Dead-letter topic of a consumed topic."""
    return f"{topic}.dlq"


def all_topics() -> tuple[str, ...]:
    """Every topic the platform uses, dead-letter topics included."""
    names = [*MAIN_TOPICS, *(dlq(t) for t in MAIN_TOPICS)]
    if NOTIFY_DLQ not in names:
        names.append(NOTIFY_DLQ)
    return tuple(names)


def partitions(topic: str) -> int:
    """A topic's partition count in production."""
    if topic in PARTITIONS:
        return PARTITIONS[topic]
    if topic in all_topics():
        return DLQ_PARTITIONS
    raise KeyError(topic)
