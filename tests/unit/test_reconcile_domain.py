"""Reconciliation rules of activities and campaigns, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    event_id_for,
)
from services.reconcile.domain import (
    ACTIVITY,
    Kind,
    OrderRecord,
    ReservationRecord,
    compare,
    state_missing,
)
from services.reconcile.groupbuy_domain import (
    CampaignMeta,
    CampaignRecord,
    GroupOrder,
    LiveGroup,
    compare_campaign,
    group_events,
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


# --- group buying ---------------------------------------------------------------------

GID = "3-" + "a" * 32
OLD_MS = int(OLD.timestamp() * 1000)
FRESH_MS = int(FRESH.timestamp() * 1000)


def group(
    members: tuple[str, ...] = ("lead", "m1", "m2"),
    state: str = "completed",
    settled_ms: int | None = OLD_MS,
    opened_ms: int = OLD_MS - 60_000,
    size: int = 3,
    released: frozenset[str] = frozenset(),
    how: str | None = "full",
    gid: str = GID,
) -> LiveGroup:
    return LiveGroup(
        group_id=gid,
        state=state,
        leader=members[0],
        size=size,
        opened_ms=opened_ms,
        deadline_ms=opened_ms + 3_600_000,
        settled_ms=settled_ms if state != "open" else None,
        how=how if state == "completed" else None,
        members=members,
        released=released,
    )


def gorder(
    user: str,
    state: str = "pending_payment",
    group_state: str = "completed",
    reason: str | None = None,
    cancelled_at: datetime | None = None,
    gid: str = GID,
) -> GroupOrder:
    return GroupOrder(gid, user, state, reason, cancelled_at, group_state, OLD, NOW)


def record(
    orders: list[GroupOrder], state: str | None = "completed", rows: tuple[str, ...] | None = None
) -> CampaignRecord:
    members = [o.user_id for o in orders] if rows is None else list(rows)
    return CampaignRecord(
        groups={} if state is None else {GID: state},
        members={(GID, u) for u in members},
        orders={f"{o.group_id}:{o.user_id}": o for o in orders},
    )


def campaign(
    groups: list[LiveGroup],
    rec: CampaignRecord,
    remaining: int,
    stock: int = 9,
    in_outbox: frozenset[str] = frozenset(),
) -> tuple[Any, list[str]]:
    return compare_campaign(
        3, stock, remaining, {g.group_id: g for g in groups}, set(in_outbox), rec, NOW, GRACE
    )


def test_a_consistent_campaign_has_no_mismatch() -> None:
    orders = [gorder("lead"), gorder("m1", "paid"), gorder("m2")]
    report, republish = campaign([group()], record(orders), remaining=6)
    assert (report.total, republish) == (0, [])


def test_a_group_whose_events_never_reached_postgresql_is_republished_whole() -> None:
    report, republish = campaign([group()], record([], state=None), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [
        f"{GID}:lead",
        f"{GID}:m1",
        f"{GID}:m2",
        GID,
    ]
    assert republish == [GID]


def test_a_group_still_in_the_outbox_is_in_flight() -> None:
    report, republish = campaign(
        [group()], record([], state=None), remaining=6, in_outbox=frozenset({GID})
    )
    assert (report.total, republish) == (0, [])


def test_one_lost_join_is_found_from_the_member_who_joined_after_it() -> None:
    # Open and recent: only the order of the member after m1 proves m1's event was lost.
    young = group(state="open", opened_ms=FRESH_MS)
    orders = [gorder("lead", group_state="open"), gorder("m2", group_state="open")]
    report, republish = campaign([young], record(orders, state="open"), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [f"{GID}:m1"]
    assert republish == [GID]


def test_the_last_join_of_an_open_group_is_not_judged_without_a_time_or_a_later_event() -> None:
    # Redis keeps no join time: m2's event may still be on its way to the consumers.
    open_group = group(state="open")
    orders = [gorder("lead", group_state="open"), gorder("m1", group_state="open")]
    report, _ = campaign([open_group], record(orders, state="open"), remaining=6)
    assert report.total == 0


def test_a_lost_opening_is_found_once_older_than_the_grace() -> None:
    young = group(members=("lead",), state="open", opened_ms=FRESH_MS)
    assert campaign([young], record([], state=None), remaining=6)[0].total == 0
    old = group(members=("lead",), state="open")
    report, republish = campaign([old], record([], state=None), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [f"{GID}:lead"]
    assert republish == [GID]


def test_a_completion_that_reached_neither_the_record_nor_the_orders_is_lost() -> None:
    orders = [gorder(u, group_state="open") for u in ("lead", "m1", "m2")]
    report, republish = campaign([group()], record(orders, state="open"), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [GID]
    assert republish == [GID]


def test_a_member_order_created_after_its_group_settled_needs_the_settlement_again() -> None:
    orders = [gorder("lead"), gorder("m1"), gorder("m2", group_state="open")]
    report, republish = campaign([group()], record(orders), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [GID]
    assert republish == [GID]


def test_a_member_missing_only_from_the_record_is_lost_too() -> None:
    orders = [gorder("lead"), gorder("m1"), gorder("m2")]
    report, _ = campaign([group()], record(orders, rows=("lead", "m2")), remaining=6)
    assert report.mismatches[Kind.GROUP_EVENT_LOST] == [f"{GID}:m1"]


def test_a_cancelled_order_of_a_completed_group_whose_unit_never_came_back() -> None:
    orders = [
        gorder("lead", "cancelled", reason="timeout", cancelled_at=OLD),
        gorder("m1", "cancelled", reason="user", cancelled_at=FRESH),
        gorder("m2"),
    ]
    report, _ = campaign([group()], record(orders), remaining=6)
    assert report.mismatches[Kind.GROUP_CANCELLED_NOT_RELEASED] == [f"{GID}:lead"]
    assert report.total == 1


def test_units_returned_count_back_to_the_stock_and_a_live_order_must_not_have_one() -> None:
    orders = [gorder("lead", "cancelled", reason="timeout", cancelled_at=OLD), gorder("m1")]
    orders.append(gorder("m2"))
    released = group(released=frozenset({"lead", "m2"}))
    report, _ = campaign([released], record(orders), remaining=8)
    assert report.mismatches[Kind.GROUP_RELEASED_BUT_ORDER_LIVE] == [f"{GID}:m2"]
    assert report.mismatches[Kind.GROUP_STOCK_DRIFT] == []


def test_open_groups_hold_all_their_units_and_failed_ones_none() -> None:
    gid2 = "3-" + "b" * 32
    open_group = group(members=("a",), state="open", gid=gid2)
    failed = group(state="failed")
    orders = [gorder(u, "cancelled", "failed", "group_failed", OLD) for u in failed.members]
    orders.append(gorder("a", group_state="open", gid=gid2))
    rec = CampaignRecord(
        groups={GID: "failed", gid2: "open"},
        members={(GID, u) for u in failed.members} | {(gid2, "a")},
        orders={f"{o.group_id}:{o.user_id}": o for o in orders},
    )
    assert campaign([open_group, failed], rec, remaining=6)[0].total == 0
    drift = campaign([open_group, failed], rec, remaining=5)[0]
    assert drift.mismatches[Kind.GROUP_STOCK_DRIFT] == ["remaining 5 + held by groups 3 != stock 9"]


def test_an_order_of_a_group_redis_does_not_know_is_reported() -> None:
    report, republish = campaign([], record([gorder("ghost")]), remaining=9)
    assert report.mismatches[Kind.GROUP_ORDER_WITHOUT_MEMBER] == [f"{GID}:ghost"]
    assert report.needs_attention == 1 and republish == []


def test_a_groups_events_are_rebuilt_with_the_relays_ids_and_order() -> None:
    virtual = group(members=("lead", "m1"), how="virtual")
    events = group_events(3, virtual, CampaignMeta(4900, "sku-gb", 900_000))
    assert [(e.type, e.id) for e in events] == [
        (GROUP_OPENED, event_id_for(GROUP_OPENED, GID)),
        (GROUP_JOINED, event_id_for(GROUP_JOINED, f"{GID}:m1")),
        (GROUP_COMPLETED, event_id_for(GROUP_COMPLETED, GID)),
    ]
    assert {e.key for e in events} == {GID}
    assert events[1].data["position"] == 2 and events[1].data["unit_price_cents"] == 4900
    assert events[2].data["how"] == "virtual" and events[2].data["returned_units"] == 1
    assert events[2].data["members"] == ["lead", "m1"]
    failed = group_events(3, group(state="failed"), CampaignMeta(1, "s", 1))
    assert failed[-1].type == GROUP_FAILED and failed[-1].data["returned_units"] == 3
    assert [e.type for e in group_events(3, group(state="open"), CampaignMeta(1, "s", 1))] == [
        GROUP_OPENED,
        GROUP_JOINED,
        GROUP_JOINED,
    ]


def test_a_group_is_read_from_the_fields_the_scripts_write() -> None:
    fields = {
        "state": "completed",
        "leader": "lead",
        "size": "3",
        "n": "2",
        "opened": "1000",
        "deadline": "5000",
        "completed": "4000",
        "how": "virtual",
        "released:m1": "1",
    }
    g = LiveGroup.from_redis(GID, fields, ["lead", "m1"])
    assert (g.state, g.settled_ms, g.how, g.released) == ("completed", 4000, "virtual", {"m1"})
    assert g.held_units == 1
