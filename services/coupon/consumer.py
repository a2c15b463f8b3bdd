"""The coupon service's record of issued coupons: coupon.claimed and coupon.granted on
the coupons topic (group coupon-record) -> one coupon.coupons row each, idempotent on
the coupon id. The other coupon.* types travel on the same topic and are not for it.

A message that cannot be a coupon (a malformed event, a template PostgreSQL does not
know) is bad data: PermanentError, so BatchConsumer dead-letters it alone and records
the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.common.kafka import Incoming, PermanentError
from services.coupon.domain import ISSUE_EVENTS, IssuedCoupon, issued_coupon
from services.coupon.metrics import CouponMetrics
from services.coupon.repository import CouponRecord

RECORD_GROUP = "coupon-record"


class CouponRecordHandler:
    def __init__(self, record: CouponRecord, metrics: CouponMetrics) -> None:
        self._record = record
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        coupons: list[IssuedCoupon] = []
        for item in batch:
            if item.event.type not in ISSUE_EVENTS:
                continue
            try:
                coupons.append(issued_coupon(item.event))
            except (KeyError, TypeError, ValueError) as exc:
                raise PermanentError(f"{item.event.type} {item.event.id}: {exc!r}") from exc
        try:
            new = await self._record.record(coupons)
        except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as exc:
            raise PermanentError(f"coupon cannot be recorded: {exc}") from exc
        self._metrics.recorded.inc(new)
