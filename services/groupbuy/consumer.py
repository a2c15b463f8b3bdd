"""The groupbuy service's consumers.

- GroupRecordHandler: the groupbuy topic -> groups and members in PostgreSQL (the record).
- UnitReturnHandler: order.cancelled of a group order whose group completed (unpaid past
  the deadline, or cancelled by the shopper) -> that member's unit back to the campaign
  stock, once per member. Cancellations of failed groups (reason group_failed) are
  skipped: expire.lua already returned the whole group's units.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    ORDER_CANCELLED,
)
from services.common.kafka import Incoming, PermanentError
from services.groupbuy.metrics import GroupbuyMetrics
from services.groupbuy.repository import GroupRecord
from services.groupbuy.store import GroupStore

log = logging.getLogger(__name__)

GROUP_EVENTS = (GROUP_OPENED, GROUP_JOINED, GROUP_COMPLETED, GROUP_FAILED)


class GroupRecordHandler:
    def __init__(self, record: GroupRecord) -> None:
        self._record = record

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        events = [i.event for i in batch if i.event.type in GROUP_EVENTS]
        for event in events:
            if not isinstance(event.data.get("group_id"), str):
                raise PermanentError(f"{event.type} without a group id: {event.id}")
        try:
            await self._record.apply(events)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed group event: {exc!r}") from exc


class UnitReturnHandler:
    def __init__(self, store: GroupStore, metrics: GroupbuyMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        for item in batch:
            data = item.event.data
            if item.event.type != ORDER_CANCELLED or data.get("source") != "groupbuy":
                continue
            if data.get("reason") == "group_failed":
                continue
            group_id, user_id = data.get("group_id"), data.get("user_id")
            if not isinstance(group_id, str) or not isinstance(user_id, str):
                raise PermanentError(f"group order.cancelled without group/user: {item.event.id}")
            result = await self._store.release_unit(group_id, user_id)
            self._metrics.unit_returns.labels(result).inc()
            if result == "unknown":
                log.error(
                    "cancelled group order of %s is not in Redis; unit not returned", group_id
                )
