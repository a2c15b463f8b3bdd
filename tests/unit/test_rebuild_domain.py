"""Rebuilding a sale's Redis state from PostgreSQL: what may be offered again, who holds
what, and what a later cancellation returns. Without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from services.reconcile.domain import ActivityOrder
from services.reconcile.groupbuy_domain import GroupOrder, LiveGroup
from services.reconcile.rebuild_domain import (
    RecordedGroup,
    epoch_ms,
    group_hash,
    plan_activity,
    plan_campaign,
)

AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PAY = AT + timedelta(minutes=15)


def order(rid: str, user: str, state: str = "pending_payment", qty: int = 1) -> ActivityOrder:
    reason = "timeout" if state == "cancelled" else None
    return ActivityOrder(rid, user, qty, state, reason, None, AT, PAY)


def decoded(plan_reservations: dict[str, bytes]) -> dict[str, dict[str, object]]:
    return {rid: orjson.loads(raw) for rid, raw in plan_reservations.items()}


def test_remaining_is_the_stock_less_live_orders_and_cancelled_orders_count_as_returned() -> None:
    orders = [
        order("1-a", "u1"),
        order("1-b", "u2", "paid", qty=2),
        order("1-c", "u3", "cancelled"),
    ]
    plan = plan_activity(10, orders, {})
    assert plan.stock == 7
    assert plan.users == {"u1": 1, "u2": 2}
    records = decoded(plan.reservations)
    assert records["1-a"] == {
        "state": "reserved",
        "user": "u1",
        "qty": 1,
        "at": str(epoch_ms(AT)),
        "deadline": str(epoch_ms(PAY)),
    }
    assert records["1-c"]["state"] == "released" and records["1-c"]["reason"] == "timeout"
    assert (plan.live_orders, plan.released, plan.unordered, plan.oversold) == (2, 1, 0, 0)


def test_a_surviving_reservation_without_an_order_keeps_its_units() -> None:
    surviving: dict[str, dict[str, object]] = {
        "1-x": {"state": "reserved", "user": "u9", "qty": 1, "at": "5", "deadline": "9"},
        "1-y": {"state": "released", "user": "u8", "qty": 1, "at": "5", "deadline": "9"},
    }
    plan = plan_activity(5, [order("1-a", "u1")], surviving)
    assert plan.stock == 3
    assert plan.users == {"u1": 1, "u9": 1}
    assert plan.unordered == 1


def test_the_order_wins_over_a_surviving_record_that_is_behind_it() -> None:
    # Cancelled in PostgreSQL, its stock return still on its way: counted as returned here,
    # so the release that arrives later finds it released and returns nothing twice.
    surviving: dict[str, dict[str, object]] = {
        "1-a": {"state": "reserved", "user": "u1", "qty": 1, "at": "5", "deadline": "9"},
    }
    plan = plan_activity(5, [order("1-a", "u1", "cancelled")], surviving)
    assert plan.stock == 5 and plan.users == {}
    assert decoded(plan.reservations)["1-a"]["state"] == "released"


def test_more_live_orders_than_stock_offers_nothing_and_says_by_how_much() -> None:
    plan = plan_activity(1, [order("1-a", "u1"), order("1-b", "u2")], {})
    assert (plan.stock, plan.oversold) == (0, 1)


# --- campaigns ------------------------------------------------------------------------

G1 = "7-" + "1" * 32
G2 = "7-" + "2" * 32


def recorded(
    gid: str, members: tuple[str, ...], state: str = "open", size: int = 2
) -> RecordedGroup:
    return RecordedGroup(
        group_id=gid,
        leader=members[0],
        size=size,
        state=state,
        completion="full" if state == "completed" else None,
        opened_at=AT,
        deadline=AT + timedelta(hours=1),
        settled_at=AT + timedelta(minutes=5) if state != "open" else None,
        members=members,
    )


def gorder(
    gid: str, user: str, state: str = "pending_payment", group_state: str = "open"
) -> GroupOrder:
    reason = {"cancelled": "timeout"}.get(state)
    if group_state == "failed":
        reason = "group_failed"
    return GroupOrder(gid, user, state, reason, None, group_state, AT, PAY)


def test_open_groups_hold_n_units_and_completed_ones_one_per_member_not_cancelled() -> None:
    groups = [recorded(G1, ("l1", "m1"), "completed"), recorded(G2, ("l2",))]
    orders = [
        gorder(G1, "l1", group_state="completed"),
        gorder(G1, "m1", "cancelled", "completed"),
        gorder(G2, "l2"),
    ]
    plan = plan_campaign(6, 2, 900, groups, orders, {})
    assert plan.stock == 6 - 1 - 2
    assert plan.users == {"l1": 1, "l2": 1}
    assert plan.groups[G1].released == {"m1"}
    assert plan.deadlines == {G2: epoch_ms(AT + timedelta(hours=1))}
    assert group_hash(plan.groups[G1]) == {
        "state": "completed",
        "leader": "l1",
        "size": "2",
        "n": "2",
        "opened": str(epoch_ms(AT)),
        "deadline": str(epoch_ms(AT + timedelta(hours=1))),
        "completed": str(epoch_ms(AT + timedelta(minutes=5))),
        "how": "full",
        "released:m1": "1",
    }
    assert group_hash(plan.groups[G2])["n"] == "1"


def test_failed_groups_hold_nothing_and_give_every_member_the_allowance_back() -> None:
    groups = [recorded(G1, ("l1", "m1"), "failed")]
    orders = [gorder(G1, u, "cancelled", "failed") for u in ("l1", "m1")]
    plan = plan_campaign(4, 2, 900, groups, orders, {})
    assert (plan.stock, plan.users, plan.deadlines) == (4, {}, {})
    assert group_hash(plan.groups[G1])["state"] == "failed"


def test_a_member_known_only_from_an_order_and_a_lost_completion_are_filled_in() -> None:
    # The record has the leader; m1's order exists (its row was not written yet) and the
    # group is full, but its group.completed never arrived: it completed.
    plan = plan_campaign(
        4, 2, 900, [recorded(G1, ("l1",))], [gorder(G1, "l1"), gorder(G1, "m1")], {}
    )
    group = plan.groups[G1]
    assert (group.members, group.state, group.how) == (("l1", "m1"), "completed", "full")
    assert plan.stock == 2 and plan.deadlines == {}


def test_a_group_known_only_from_its_orders_takes_its_units() -> None:
    plan = plan_campaign(4, 2, 900, [], [gorder(G2, "l2")], {})
    group = plan.groups[G2]
    assert (group.leader, group.state, group.size) == ("l2", "open", 2)
    assert group.deadline_ms == epoch_ms(PAY) - 900_000
    assert plan.stock == 2 and plan.users == {"l2": 1}


def test_a_group_that_survived_in_redis_wins_over_its_row() -> None:
    survivor = LiveGroup(
        G1, "completed", "l1", 2, epoch_ms(AT), epoch_ms(AT) + 1, epoch_ms(AT), "full",
        ("l1", "m1"), frozenset(),
    )  # fmt: skip
    plan = plan_campaign(4, 2, 900, [recorded(G1, ("l1",))], [], {G1: survivor})
    assert plan.groups[G1] == survivor
    assert plan.stock == 2
