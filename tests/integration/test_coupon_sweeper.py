"""The coupon sweeper on the real PostgreSQL: expiry and one expiring notice per coupon,
with sweepers running again and side by side."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry

from services.common.events import COUPON_EXPIRED, COUPON_EXPIRING, event_id_for, rfc3339
from services.common.settings import Settings
from services.coupon.announce import coupon_outbox
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.sweeper import CouponSweeper
from tests.coupon_helpers import create_template, issue_coupon, outbox_events


def sweeper(pool: asyncpg.Pool, settings: Settings, batch_size: int = 500) -> CouponSweeper:
    return CouponSweeper(
        coupon_outbox(pool), settings, LifecycleMetrics(CollectorRegistry()), batch_size=batch_size
    )


async def states(db: asyncpg.Connection) -> dict[str, str]:
    return {r["id"]: r["state"] for r in await db.fetch("SELECT id, state FROM coupon.coupons")}


async def test_available_coupons_past_their_end_expire_once(
    pool: asyncpg.Pool, settings: Settings, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    now = datetime.now(UTC)
    ended = now - timedelta(minutes=1)
    over = await issue_coupon(db, template, "u1", now - timedelta(days=2), ended)
    fresh = await issue_coupon(db, template, "u1", now - timedelta(days=1), now + timedelta(days=5))
    used = await issue_coupon(db, template, "u1", now - timedelta(days=2), ended, state="revoked")
    assert await sweeper(pool, settings).sweep_once() == (1, 0)
    assert await sweeper(pool, settings).sweep_once() == (0, 0)
    assert await states(db) == {over: "expired", fresh: "available", used: "revoked"}
    [event] = await outbox_events(db, COUPON_EXPIRED)
    assert event.id == event_id_for(COUPON_EXPIRED, over) and event.key == "u1"
    assert event.data == {
        "coupon_id": over,
        "user_id": "u1",
        "template_id": template,
        "valid_until": rfc3339(ended),
    }
    assert (
        await db.fetchval("SELECT expired_at FROM coupon.coupons WHERE id = $1", over) is not None
    )


async def test_a_locked_coupon_past_its_end_is_left_to_its_order(
    pool: asyncpg.Pool, settings: Settings, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    now = datetime.now(UTC)
    coupon_id = await issue_coupon(
        db, template, "u1", now - timedelta(days=2), now - timedelta(seconds=5)
    )
    await db.execute(
        "UPDATE coupon.coupons SET state = 'locked', order_id = gen_random_uuid(),"
        " discount_cents = 100 WHERE id = $1",
        coupon_id,
    )
    assert await sweeper(pool, settings).sweep_once() == (0, 0)
    assert await states(db) == {coupon_id: "locked"}


async def test_coupons_ending_within_the_notice_period_are_announced_once(
    pool: asyncpg.Pool, settings: Settings, db: asyncpg.Connection
) -> None:
    template = await create_template(db, name="满100减10")
    now = datetime.now(UTC)
    soon_end = now + timedelta(hours=3)
    soon = await issue_coupon(db, template, "u1", now - timedelta(days=1), soon_end)
    await issue_coupon(db, template, "u2", now - timedelta(days=1), now + timedelta(days=3))
    assert await sweeper(pool, settings).sweep_once() == (0, 1)
    assert await sweeper(pool, settings).sweep_once() == (0, 0)
    [event] = await outbox_events(db, COUPON_EXPIRING)
    assert event.id == event_id_for(COUPON_EXPIRING, soon) and event.key == "u1"
    assert event.data == {
        "coupon_id": soon,
        "user_id": "u1",
        "template_id": template,
        "name": "满100减10",
        "valid_until": rfc3339(soon_end),
    }
    shorter = dataclasses.replace(settings, coupon_expiring_notice_seconds=60.0)
    assert await sweeper(pool, shorter).sweep_once() == (0, 0)


async def test_concurrent_sweepers_expire_and_announce_each_coupon_once(
    pool: asyncpg.Pool, settings: Settings, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    now = datetime.now(UTC)
    rows = [
        (f"{template}-{i:032x}", template, f"u{i}", "claim", now - timedelta(days=1),
         now + (timedelta(seconds=-i - 1) if i % 2 else timedelta(hours=1, seconds=i)), now)
        for i in range(600)
    ]  # fmt: skip
    await db.copy_records_to_table(
        "coupons",
        schema_name="coupon",
        records=rows,
        columns=[
            "id",
            "template_id",
            "user_id",
            "origin",
            "valid_from",
            "valid_until",
            "issued_at",
        ],
    )
    results = await asyncio.gather(
        *(sweeper(pool, settings, batch_size=50).sweep_once() for _ in range(4))
    )
    # A sweeper that met rows locked by another may stop early: the next round catches up.
    results += [
        await sweeper(pool, settings).sweep_once(),
        await sweeper(pool, settings).sweep_once(),
    ]
    assert sum(r[0] for r in results) == 300
    assert sum(r[1] for r in results) == 300
    assert results[-1] == (0, 0)
    expired = await outbox_events(db, COUPON_EXPIRED)
    expiring = await outbox_events(db, COUPON_EXPIRING)
    assert len(expired) == len({e.data["coupon_id"] for e in expired}) == 300
    assert len(expiring) == len({e.data["coupon_id"] for e in expiring}) == 300
    assert await db.fetchval("SELECT count(*) FROM coupon.coupons WHERE state = 'expired'") == 300
    assert (
        await db.fetchval("SELECT count(*) FROM coupon.coupons WHERE reminded_at IS NOT NULL")
        == 300
    )
