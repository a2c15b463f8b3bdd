"""Rebuilding a sale's Redis state from PostgreSQL after Redis lost it: the rules.

Redis is the gate and PostgreSQL the record, so the record decides what is sold. What may
be offered again is what is neither held by a live order (pending_payment or paid) nor by
a reservation or group that survived in Redis without an order yet:

    remaining = initial stock - live orders - surviving reservations not yet ordered

Per-user allowances are rebuilt from the same units, so a shopper who holds an order
cannot take another beyond the limit, and every live order's reservation (or group
membership) is recorded again, so a later order.cancelled returns its unit exactly once
through the usual scripts. Cancelled orders are recorded as already returned: their
units are counted as available here, and a cancellation still in flight must not return
them a second time.

Pure: the adapter (rebuild.py) reads both sides and writes what these functions decide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import orjson

from services.reconcile.domain import ActivityOrder
from services.reconcile.groupbuy_domain import GroupOrder, LiveGroup

LIVE = frozenset({"pending_payment", "paid"})


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- seckill activities ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityRebuild:
    stock: int
    # user -> units held (reserve.lua's per-user limit reads it)
    users: dict[str, int]
    # reservation id -> JSON record, as reserve.lua / release.lua write it
    reservations: dict[str, bytes]
    live_orders: int
    unordered: int  # surviving reservations without an order, still holding stock
    released: int
    oversold: int  # units held beyond the stock (0 unless the record is inconsistent)


def _record(state: str, user: str, qty: int, at_ms: int, deadline_ms: int) -> dict[str, object]:
    # reserve.lua's shape: qty a number, times strings.
    return {
        "state": state,
        "user": user,
        "qty": qty,
        "at": str(at_ms),
        "deadline": str(deadline_ms),
    }


def plan_activity(
    initial_stock: int,
    orders: list[ActivityOrder],
    surviving: dict[str, dict[str, object]],
) -> ActivityRebuild:
    """The activity's stock, allowances and reservations from its orders and whatever
    reservations survived in Redis (decoded records). An order's state wins over a
    surviving record: PostgreSQL is the record, and a cancellation there may not have
    reached Redis yet."""
    records: dict[str, dict[str, object]] = {}
    live = released = 0
    for order in orders:
        found = surviving.get(order.reservation_id)
        record = (
            dict(found)
            if found
            else _record(
                "reserved",
                order.user_id,
                order.quantity,
                epoch_ms(order.reserved_at),
                epoch_ms(order.pay_before),
            )
        )
        if order.state in LIVE:
            record["state"] = "reserved"
            record.pop("reason", None)
            live += 1
        else:
            record["state"] = "released"
            record["reason"] = order.cancel_reason or "unknown"
            released += 1
        records[order.reservation_id] = record
    unordered = 0
    for rid, record in surviving.items():
        if rid not in records:
            records[rid] = dict(record)
            unordered += record.get("state") == "reserved"
    users: dict[str, int] = {}
    held = 0
    for record in records.values():
        if record["state"] == "reserved":
            qty = int(str(record["qty"]))
            held += qty
            user = str(record["user"])
            users[user] = users.get(user, 0) + qty
    return ActivityRebuild(
        stock=max(0, initial_stock - held),
        users=users,
        reservations={rid: orjson.dumps(r) for rid, r in records.items()},
        live_orders=live,
        unordered=unordered,
        released=released,
        oversold=max(0, held - initial_stock),
    )


# --- group-buy campaigns --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedGroup:
    """A group of groupbuy.groups, with its member rows (user, position) in order."""

    group_id: str
    leader: str
    size: int
    state: str
    completion: str | None
    opened_at: datetime
    deadline: datetime
    settled_at: datetime | None
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CampaignRebuild:
    stock: int
    users: dict[str, int]  # user -> groups taken part in (open or completed, not released)
    groups: dict[str, LiveGroup]
    # group id -> the open group's deadline (ms): the sweeper's work list
    deadlines: dict[str, int]
    live_orders: int
    oversold: int


def group_hash(group: LiveGroup) -> dict[str, str]:
    """The group's hash as open/join/expire/release_unit.lua write it."""
    fields = {
        "state": group.state,
        "leader": group.leader,
        "size": str(group.size),
        "n": str(len(group.members)),
        "opened": str(group.opened_ms),
        "deadline": str(group.deadline_ms),
    }
    if group.state == "completed":
        fields |= {"completed": str(group.settled_ms), "how": group.how or "full"}
    elif group.state == "failed":
        fields["failed"] = str(group.settled_ms)
    fields |= {f"released:{user}": "1" for user in sorted(group.released)}
    return fields


def plan_campaign(
    initial_stock: int,
    group_size: int,
    payment_timeout_seconds: int,
    recorded: list[RecordedGroup],
    orders: list[GroupOrder],
    surviving: dict[str, LiveGroup],
) -> CampaignRebuild:
    """The campaign's stock, allowances and groups from the record, its orders and any
    group that survived in Redis (Redis decides a group's fate first, so a surviving
    group wins over its row). Orders fill what the record lacks: members whose row is
    missing, groups known only from their orders, settlements the record has not seen.
    A group the record says is open although all N members joined is rebuilt as
    completed: its group.completed went missing with Redis, and reconciliation then
    publishes it again."""
    by_group: dict[str, list[GroupOrder]] = {}
    for order in sorted(orders, key=lambda o: o.reserved_at):
        by_group.setdefault(order.group_id, []).append(order)
    rows = {g.group_id: g for g in recorded}
    groups: dict[str, LiveGroup] = {}
    for gid in sorted(set(rows) | set(by_group) | set(surviving)):
        group_orders = by_group.get(gid, [])
        if gid in surviving:
            group = surviving[gid]
        elif gid in rows:
            group = _from_record(rows[gid], group_orders)
        else:
            group = _from_orders(gid, group_size, payment_timeout_seconds, group_orders)
        cancelled = {
            o.user_id
            for o in group_orders
            if o.state == "cancelled" and o.cancel_reason != "group_failed"
        }
        if group.state == "completed" and cancelled - group.released:
            group = replace(group, released=group.released | (cancelled & set(group.members)))
        groups[gid] = group
    users: dict[str, int] = {}
    for group in groups.values():
        if group.state == "failed":
            continue
        for user in group.members:
            if user not in group.released:
                users[user] = users.get(user, 0) + 1
    held = sum(g.held_units for g in groups.values())
    return CampaignRebuild(
        stock=max(0, initial_stock - held),
        users=users,
        groups=groups,
        deadlines={g.group_id: g.deadline_ms for g in groups.values() if g.state == "open"},
        live_orders=sum(o.state in LIVE for o in orders),
        oversold=max(0, held - initial_stock),
    )


def _settled_state(recorded_state: str, orders: list[GroupOrder]) -> str:
    """The furthest state either consumer saw (the record and the orders each apply the
    group's events at their own pace)."""
    if recorded_state != "open":
        return recorded_state
    seen = {o.group_state for o in orders} - {"open"}
    return seen.pop() if len(seen) == 1 else recorded_state


def _from_record(row: RecordedGroup, orders: list[GroupOrder]) -> LiveGroup:
    members = list(row.members)
    if row.leader not in members:
        members.insert(0, row.leader)
    members += [o.user_id for o in orders if o.user_id not in members]
    state = _settled_state(row.state, orders)
    how = row.completion
    settled_at = row.settled_at
    if state == "open" and len(members) >= row.size:
        # Full, yet never recorded as completed: the completing join's group.completed
        # was lost. The group completed when its last member joined.
        state, how = "completed", "full"
    if state != "open" and settled_at is None:
        settled_at = max((o.reserved_at for o in orders), default=row.opened_at)
    return LiveGroup(
        group_id=row.group_id,
        state=state,
        leader=row.leader,
        size=row.size,
        opened_ms=epoch_ms(row.opened_at),
        deadline_ms=epoch_ms(row.deadline),
        settled_ms=None if settled_at is None else epoch_ms(settled_at),
        how=(how or "full") if state == "completed" else None,
        members=tuple(members),
        released=frozenset(),
    )


def _from_orders(
    gid: str, size: int, payment_timeout_seconds: int, orders: list[GroupOrder]
) -> LiveGroup:
    """A group known only from its members' orders (its record rows were lost): the
    leader joined first, and every order is payable until the group's deadline plus the
    campaign's payment window."""
    first = orders[0]
    row = RecordedGroup(
        group_id=gid,
        leader=first.user_id,
        size=size,
        state="open",
        completion=None,
        opened_at=first.reserved_at,
        deadline=first.pay_before - timedelta(seconds=payment_timeout_seconds),
        settled_at=None,
        members=tuple(o.user_id for o in orders),
    )
    return _from_record(row, orders)
