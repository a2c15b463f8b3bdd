"""Reconciliation rules of group buying: compare a campaign's groups in Redis (the gate:
open.lua, join.lua, expire.lua) with the record in PostgreSQL (groupbuy.groups,
groupbuy.members) and the members' orders, and rebuild a lost group's events.

What an acknowledged open or join that never reached PostgreSQL looks like: the group
and its members are in Redis, their outbox entries are gone from the stream (the relay
published them and Kafka acknowledged, then a memory-only broker restarted before the
consumers read them), and PostgreSQL has no order and no member row for them. The repair
publishes the group's events again, built from the Redis state, with the ids the relay
gave them (derived from the group and member), so whatever did arrive is deduplicated.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    Envelope,
    from_epoch_ms,
)
from services.groupbuy.domain import outbox_event
from services.order.domain import group_order_key
from services.reconcile.domain import CAMPAIGN, Kind, SaleReport


@dataclass(frozen=True, slots=True)
class LiveGroup:
    """A group as Redis holds it (the fields open/join/expire.lua write)."""

    group_id: str
    state: str  # open | completed | failed
    leader: str
    size: int
    opened_ms: int
    deadline_ms: int
    settled_ms: int | None  # when it completed or failed
    how: str | None  # full | virtual, once completed
    members: tuple[str, ...]  # in joining order, the leader first
    released: frozenset[str]  # members whose unit came back (release_unit.lua)

    @classmethod
    def from_redis(cls, group_id: str, fields: dict[str, str], members: list[str]) -> LiveGroup:
        state = fields["state"]
        settled = fields.get("completed") if state == "completed" else fields.get("failed")
        return cls(
            group_id=group_id,
            state=state,
            leader=fields["leader"],
            size=int(fields["size"]),
            opened_ms=int(fields["opened"]),
            deadline_ms=int(fields["deadline"]),
            settled_ms=int(settled) if settled else None,
            how=fields.get("how") or None,
            members=tuple(members),
            released=frozenset(
                k.removeprefix("released:") for k in fields if k.startswith("released:")
            ),
        )

    @property
    def held_units(self) -> int:
        """Units of the campaign stock this group holds: all N while open; one per member
        not released once completed (a virtual completion returned the rest); none once
        failed."""
        if self.state == "open":
            return self.size
        if self.state == "completed":
            return len(self.members) - len(self.released & set(self.members))
        return 0


@dataclass(frozen=True, slots=True)
class CampaignMeta:
    """What the scripts copy from the campaign's Redis settings into the events."""

    price_cents: int
    sku: str
    pay_ms: int


@dataclass(frozen=True, slots=True)
class GroupOrder:
    group_id: str
    user_id: str
    state: str  # pending_payment | paid | cancelled
    cancel_reason: str | None
    cancelled_at: datetime | None
    group_state: str  # open | completed | failed
    reserved_at: datetime  # the member's join time
    pay_before: datetime


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """The campaign as PostgreSQL knows it: groups (id -> state), member rows
    (group id, user id) and the members' orders (by group_order_key)."""

    groups: dict[str, str]
    members: set[tuple[str, str]]
    orders: dict[str, GroupOrder]


def compare_campaign(
    campaign_id: int,
    initial_stock: int,
    remaining_stock: int,
    groups: dict[str, LiveGroup],
    in_outbox: set[str],
    record: CampaignRecord,
    now: datetime,
    grace: timedelta,
) -> tuple[SaleReport, list[str]]:
    """Mismatches of one campaign, and the groups whose events to publish again.

    in_outbox: ids of groups with entries still in the outbox stream (in flight: the
    whole group is left for a later run). Redis keeps no join time, so a member's event
    is judged lost only once it is certainly older than the grace period (the leader's
    is as old as the group; every member's is older than the group's completion or
    failure) or once a later event of the same group took effect: a group's events
    share a partition and are consumed in order.
    """
    report = SaleReport(CAMPAIGN, campaign_id)
    settled = now - grace
    republish: list[str] = []
    for gid, group in groups.items():
        if gid in in_outbox:
            continue
        lost = _lost_events(group, record, settled)
        if lost:
            report.mismatches[Kind.GROUP_EVENT_LOST].extend(lost)
            republish.append(gid)
        if group.state == "completed":
            _check_units(group, record, settled, report)
    for key, order in record.orders.items():
        known = groups.get(order.group_id)
        if known is None or order.user_id not in known.members:
            report.mismatches[Kind.GROUP_ORDER_WITHOUT_MEMBER].append(key)
    held = sum(g.held_units for g in groups.values())
    if remaining_stock + held != initial_stock:
        report.mismatches[Kind.GROUP_STOCK_DRIFT].append(
            f"remaining {remaining_stock} + held by groups {held} != stock {initial_stock}"
        )
    return report, republish


def _lost_events(group: LiveGroup, record: CampaignRecord, settled: datetime) -> list[str]:
    """The group's events without effect in PostgreSQL: '<group id>:<user id>' for a
    member's (the leader's is group.opened), '<group id>' for its completion or failure."""
    gid = group.group_id
    orders = [record.orders.get(group_order_key(gid, user)) for user in group.members]
    rows = [(gid, user) in record.members for user in group.members]
    recorded_state = record.groups.get(gid)
    # Evidence that the consumers got past an event: a later member's effect, or the
    # group's settlement, arrived (each consumer separately: they read at their own pace).
    orders_settled = any(o is not None and o.group_state != "open" for o in orders)
    record_settled = recorded_state is not None and recorded_state != "open"
    settled_long_ago = group.settled_ms is not None and from_epoch_ms(group.settled_ms) < settled
    lost: list[str] = []
    for i, user in enumerate(group.members):
        old = settled_long_ago or (i == 0 and from_epoch_ms(group.opened_ms) < settled)
        no_order = orders[i] is None and (
            old or orders_settled or any(o is not None for o in orders[i + 1 :])
        )
        no_row = not (rows[i] and (i > 0 or recorded_state is not None)) and (
            old or record_settled or any(rows[i + 1 :])
        )
        if no_order or no_row:
            lost.append(group_order_key(gid, user))
    if group.state != "open" and settled_long_ago:
        orders_behind = any(o is not None and o.group_state == "open" for o in orders)
        if recorded_state in (None, "open") or orders_behind:
            lost.append(gid)
    return lost


def _check_units(
    group: LiveGroup, record: CampaignRecord, settled: datetime, report: SaleReport
) -> None:
    for user in group.members:
        key = group_order_key(group.group_id, user)
        order = record.orders.get(key)
        if order is None:
            continue
        if user in group.released:
            if order.state != "cancelled":
                report.mismatches[Kind.GROUP_RELEASED_BUT_ORDER_LIVE].append(key)
        elif (
            order.state == "cancelled"
            and order.cancel_reason != "group_failed"
            and order.cancelled_at is not None
            and order.cancelled_at < settled
        ):
            report.mismatches[Kind.GROUP_CANCELLED_NOT_RELEASED].append(key)


def member_of_key(key: str) -> tuple[str, str]:
    """'<group id>:<user id>' -> (group id, user id); group ids hold no ':'."""
    group_id, _, user_id = key.partition(":")
    return group_id, user_id


def group_events(campaign_id: int, group: LiveGroup, meta: CampaignMeta) -> list[Envelope]:
    """The group's events in the order the scripts appended them, as the relay would
    publish them (same ids, same key). Redis keeps no join time: a member's event
    carries the group's opening time as its join time."""
    common = {
        "gid": group.group_id,
        "opened": str(group.opened_ms),
        "deadline": str(group.deadline_ms),
        "size": str(group.size),
    }
    entries = [
        {
            **common,
            "type": GROUP_OPENED if position == 1 else GROUP_JOINED,
            "user": user,
            "pos": str(position),
            "at": str(group.opened_ms),
            "price": str(meta.price_cents),
            "sku": meta.sku,
            "pay_ms": str(meta.pay_ms),
        }
        for position, user in enumerate(group.members, start=1)
    ]
    if group.state in ("completed", "failed") and group.settled_ms is not None:
        completed = group.state == "completed"
        entries.append(
            {
                **common,
                "type": GROUP_COMPLETED if completed else GROUP_FAILED,
                "members": orjson.dumps(list(group.members)).decode(),
                "at": str(group.settled_ms),
                "how": group.how or "full",
                "returned": str(group.size - len(group.members) if completed else group.size),
            }
        )
    return [outbox_event(campaign_id, fields) for fields in entries]
