"""Reconciliation rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.reconcile.domain import (
    ACTIVITY,
    Kind,
    OrderRecord,
    ReservationRecord,
    compare,
    state_missing,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)
OLD = NOW - timedelta(minutes=5)
FRESH = NOW - timedelta(seconds=5)


def res(rid: str, state: str = "reserved", at: datetime = OLD, qty: int = 1) -> ReservationRecord:
    return ReservationRecord(rid, f"user-{rid}", qty, state, at)


def order(
    rid: str, state: str = "pending_payment", cancelled_at: datetime | None = None
) -> OrderRecord:
    return OrderRecord(rid, state, cancelled_at)


def run(
    reservations: list[ReservationRecord],
    orders: list[OrderRecord],
    remaining: int,
    stock: int = 10,
    in_outbox: frozenset[str] = frozenset(),
):  # type: ignore[no-untyped-def]
    return compare(
        7,
        stock,
        remaining,
        {r.reservation_id: r for r in reservations},
        set(in_outbox),
        {o.reservation_id: o for o in orders},
        NOW,
        GRACE,
    )


def test_a_consistent_activity_has_no_mismatch() -> None:
    report = run(
        [res("a"), res("b"), res("c", "released")],
        [order("a"), order("b", "paid"), order("c", "cancelled", OLD)],
        remaining=8,
    )
    assert report.total == 0


def test_an_old_reservation_without_order_and_not_in_the_outbox_is_lost() -> None:
    report = run(
        [res("a"), res("b", at=FRESH), res("c")], [], remaining=7, in_outbox=frozenset({"c"})
    )
    assert report.mismatches[Kind.RESERVATION_WITHOUT_ORDER] == ["a"]
    assert report.total == 1


def test_a_cancelled_order_whose_stock_never_came_back_is_found_after_the_grace() -> None:
    report = run(
        [res("a"), res("b")],
        [order("a", "cancelled", OLD), order("b", "cancelled", FRESH)],
        remaining=8,
    )
    assert report.mismatches[Kind.CANCELLED_NOT_RELEASED] == ["a"]
    assert report.total == 1


def test_stock_released_for_a_live_order_is_reported() -> None:
    report = run(
        [res("a", "released"), res("b", "released")], [order("a"), order("b", "paid")], remaining=10
    )
    assert sorted(report.mismatches[Kind.RELEASED_BUT_ORDER_LIVE]) == ["a", "b"]


def test_an_order_unknown_to_redis_is_reported() -> None:
    report = run([], [order("ghost")], remaining=10)
    assert report.mismatches[Kind.ORDER_WITHOUT_RESERVATION] == ["ghost"]


def test_stock_drift_counts_held_units_of_live_reservations_only() -> None:
    assert (
        run(
            [res("a", qty=3), res("b", "released", qty=2)],
            [order("a"), order("b", "cancelled", OLD)],
            remaining=7,
        ).total
        == 0
    )
    drift = run([res("a", qty=3)], [order("a")], remaining=8)
    assert drift.mismatches[Kind.STOCK_DRIFT] == ["remaining 8 + held 3 != stock 10"]


def test_an_activity_whose_redis_state_is_gone_is_one_finding_that_needs_a_person() -> None:
    report = state_missing(ACTIVITY, 7)
    assert report.mismatches[Kind.REDIS_STATE_MISSING] == ["activity 7"]
    assert report.total == 1 and report.needs_attention == 1
