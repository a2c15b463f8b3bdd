"""The seckill outbox relay: every activity's outbox stream (written by reserve.lua and
release.lua) to the seckill.reservations topic, through services.common.stream_outbox."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from services.common.settings import Settings
from services.common.stream_outbox import RelayMetrics, StreamOutbox, StreamOutboxRelay
from services.common.topics import SECKILL_RESERVATIONS
from services.seckill.domain import outbox_event
from services.seckill.keys import ACTIVITIES, activity_keys, activity_of_outbox

__all__ = ["SECKILL_OUTBOX", "OutboxRelay", "RelayMetrics"]

SECKILL_OUTBOX = StreamOutbox(
    registry=ACTIVITIES,
    stream_of=lambda activity_id: activity_keys(activity_id).outbox,
    id_of=activity_of_outbox,
    to_event=outbox_event,
    topic=SECKILL_RESERVATIONS,
)


class OutboxRelay(StreamOutboxRelay):
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        metrics: RelayMetrics,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        super().__init__(redis, settings, metrics, SECKILL_OUTBOX, producer)
