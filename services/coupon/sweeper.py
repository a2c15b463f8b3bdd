"""The coupon sweeper: expires available coupons past their validity (coupon.expired) and
announces, once per coupon, that one ends soon (coupon.expiring, for notify).

Safe with several replicas: each batch locks its rows with FOR UPDATE SKIP LOCKED and
changes them in the transaction that writes their events, and a coupon leaves the set a
batch selects (state, reminded_at) in that same transaction; so two sweepers never take
the same coupon and a coupon is expired or announced once. Locked coupons are left to
their order: it is paid (used) or cancelled (released, or expired then).
"""

from __future__ import annotations

import logging

from services.common.periodic import every
from services.common.pg_outbox import OutboxWriter
from services.common.settings import Settings
from services.coupon.lifecycle_domain import coupon_expired_event, coupon_expiring_event
from services.coupon.lifecycle_metrics import LifecycleMetrics

log = logging.getLogger(__name__)

# Coupons per transaction: one bounded write and outbox insert, rows locked briefly.
BATCH_SIZE = 500

EXPIRE_BATCH = """
WITH due AS (
    SELECT id FROM coupon.coupons
    WHERE state = 'available' AND valid_until <= now()
    ORDER BY valid_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE coupon.coupons c SET state = 'expired', expired_at = now()
FROM due WHERE c.id = due.id
RETURNING c.id, c.user_id, c.template_id, c.valid_until
"""
# $2: the notice period in seconds. A coupon already past its end is the expiry's.
REMIND_BATCH = """
WITH due AS (
    SELECT id FROM coupon.coupons
    WHERE state = 'available' AND reminded_at IS NULL
      AND valid_until > now() AND valid_until <= now() + make_interval(secs => $2)
    ORDER BY valid_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE coupon.coupons c SET reminded_at = now()
FROM due, coupon.templates t
WHERE c.id = due.id AND t.id = c.template_id
RETURNING c.id, c.user_id, c.template_id, c.valid_until, t.name
"""


class CouponSweeper:
    def __init__(
        self,
        announcer: OutboxWriter,
        settings: Settings,
        metrics: LifecycleMetrics,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._db = announcer
        self._settings = settings
        self._metrics = metrics
        self._batch = batch_size

    async def sweep_once(self) -> tuple[int, int]:
        """Every due coupon, batch after batch: (expired, announced as expiring)."""
        expired = announced = 0
        while (done := await self._expire_batch()) > 0:
            expired += done
            if done < self._batch:
                break
        while (done := await self._remind_batch()) > 0:
            announced += done
            if done < self._batch:
                break
        if expired or announced:
            log.info("coupon sweep: %d expired, %d expiring notices", expired, announced)
        return expired, announced

    async def _expire_batch(self) -> int:
        async with self._db.transaction() as tx:
            rows = await tx.conn.fetch(EXPIRE_BATCH, self._batch)
            await self._db.announce(
                tx,
                [
                    coupon_expired_event(r["id"], r["user_id"], r["template_id"], r["valid_until"])
                    for r in rows
                ],
            )
        self._metrics.expired.inc(len(rows))
        return len(rows)

    async def _remind_batch(self) -> int:
        notice = self._settings.coupon_expiring_notice_seconds
        async with self._db.transaction() as tx:
            rows = await tx.conn.fetch(REMIND_BATCH, self._batch, notice)
            await self._db.announce(
                tx,
                [
                    coupon_expiring_event(
                        r["id"], r["user_id"], r["template_id"], r["name"], r["valid_until"]
                    )
                    for r in rows
                ],
            )
        self._metrics.expiring_notices.inc(len(rows))
        return len(rows)

    async def _round(self) -> None:
        try:
            await self.sweep_once()
        except Exception:
            self._metrics.sweeper_failures.inc()
            raise

    async def run(self) -> None:
        """Every coupon_sweep_interval_seconds until cancelled; a failed round is logged
        and counted, and the next one catches up."""
        await every(self._settings.coupon_sweep_interval_seconds, self._round, "coupon sweep")
