"""Group-buying rules without I/O: campaign validation, group ids, refusals, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import ValidationError
from services.common.events import event_id_for
from services.common.validation import parse_empty_body
from services.groupbuy.domain import (
    Campaign,
    Outcome,
    Status,
    campaign_of_group,
    campaign_status,
    group_view,
    join_metric_result,
    new_group_id,
    outbox_event,
    parse_campaign_id,
    parse_new_campaign,
    refusal,
)
from services.order.domain import group_order_key, order_from_group_event, order_id_for

NOW = datetime(2030, 3, 17, 18, 0, tzinfo=UTC)


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sku": "sku-1",
        "title": "Tea",
        "group_price_cents": 4900,
        "single_price_cents": 9900,
        "group_size": 3,
        "stock": 30,
        "starts_at": "2030-03-17T18:00:00Z",
        "ends_at": "2030-03-18T18:00:00Z",
        "group_window_seconds": 86400,
    }
    values.update(overrides)
    return values


def test_a_campaign_without_virtual_completion_needs_every_member() -> None:
    new = parse_new_campaign(body(), NOW)
    assert (new.virtual_completion, new.min_real_members, new.per_user_limit) == (False, 3, 1)
    assert new.payment_timeout_seconds == 900


def test_virtual_completion_needs_a_minimum_below_the_group_size() -> None:
    new = parse_new_campaign(body(virtual_completion=True, min_real_members=2), NOW)
    assert (new.virtual_completion, new.min_real_members) == (True, 2)
    for bad in (0, 3):
        with pytest.raises(ValidationError) as err:
            parse_new_campaign(body(virtual_completion=True, min_real_members=bad), NOW)
        assert err.value.field == "min_real_members"
    with pytest.raises(ValidationError) as err:
        parse_new_campaign(body(min_real_members=2), NOW)
    assert err.value.field == "min_real_members"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"group_size": 1}, "group_size"),
        ({"group_size": True}, "group_size"),
        ({"stock": 2}, "stock"),
        ({"group_price_cents": 9900}, "group_price_cents"),
        ({"single_price_cents": 0}, "single_price_cents"),
        ({"ends_at": "2030-03-17T17:00:00Z"}, "ends_at"),
        ({"starts_at": "2030-03-17T18:00:00"}, "starts_at"),
        ({"group_window_seconds": 0}, "group_window_seconds"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"virtual_completion": 1}, "virtual_completion"),
        ({"sku": " "}, "sku"),
        ({"extra": 1}, "extra"),
        # null is not "the default": the document says integer, as for every other field
        ({"min_real_members": None}, "min_real_members"),
        ({"virtual_completion": None}, "virtual_completion"),
    ],
)
def test_bad_campaigns_name_the_offending_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_new_campaign(body(**override), NOW)
    assert err.value.field == field


def test_a_campaign_that_ended_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_new_campaign(body(), NOW + timedelta(days=2))


def test_a_campaign_is_sold_out_when_a_whole_group_no_longer_fits() -> None:
    c = Campaign(id=1, **vars_of(parse_new_campaign(body(), NOW)))
    assert campaign_status(c, 3, NOW + timedelta(hours=1)) is Status.LIVE
    assert campaign_status(c, 2, NOW + timedelta(hours=1)) is Status.SOLD_OUT
    assert campaign_status(c, 30, NOW - timedelta(hours=1)) is Status.UPCOMING
    assert campaign_status(c, 30, NOW + timedelta(days=1)) is Status.ENDED


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def test_group_ids_name_their_campaign_and_nothing_else_parses() -> None:
    gid = new_group_id(42)
    assert campaign_of_group(gid) == 42
    for bad in ("42", "42-xyz", "x-" + "a" * 32, "0-" + "a" * 32, "42-" + "A" * 32):
        assert campaign_of_group(bad) is None
    assert parse_campaign_id("99999999999999999999") is None


def test_opening_and_joining_take_no_fields() -> None:
    parse_empty_body({})
    with pytest.raises(ValidationError):
        parse_empty_body({"size": 2})


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (Outcome.NOT_FOUND, 404, "not_found"),
        (Outcome.NOT_STARTED, 409, "not_started"),
        (Outcome.ENDED, 410, "campaign_ended"),
        (Outcome.LIMIT_REACHED, 409, "limit_reached"),
        (Outcome.SOLD_OUT, 410, "sold_out"),
        (Outcome.ALREADY_MEMBER, 409, "already_member"),
        (Outcome.FULL, 409, "group_full"),
        (Outcome.COMPLETED_ALREADY, 409, "group_completed"),
        (Outcome.EXPIRED, 410, "group_expired"),
    ],
)
def test_each_refusal_has_its_own_status_and_code(outcome: Outcome, status: int, code: str) -> None:
    error = refusal(outcome)
    assert (error.status, error.code) == (status, code)


def test_successes_are_not_refusals() -> None:
    for outcome in (Outcome.OPENED, Outcome.JOINED, Outcome.COMPLETED):
        with pytest.raises(ValueError):
            refusal(outcome)
    assert join_metric_result(Outcome.COMPLETED) == "joined"
    assert join_metric_result(Outcome.FULL) == "full"


GID = "7-" + "b" * 32
JOINED = {
    "type": "group.joined",
    "gid": GID,
    "user": "u1",
    "pos": "2",
    "at": "1900000001000",
    "opened": "1900000000000",
    "deadline": "1900003600000",
    "size": "3",
    "price": "4900",
    "sku": "sku-1",
    "pay_ms": "900000",
}


def test_a_join_event_carries_what_the_order_needs_and_a_stable_id() -> None:
    event = outbox_event(7, JOINED)
    assert event.key == GID and event.id == event_id_for("group.joined", f"{GID}:u1")
    assert event.data["deadline"] == "2030-03-17T18:46:40.000Z"
    assert event.data["pay_before"] == "2030-03-17T19:01:40.000Z"  # deadline + 15 min
    order = order_from_group_event(event.data)
    assert order.reservation_id == group_order_key(GID, "u1")
    assert order.id == order_id_for(f"{GID}:u1")
    assert (order.quantity, order.unit_price_cents, order.activity_id) == (1, 4900, 7)
    assert (order.source, order.group_id, order.group_state) == ("groupbuy", GID, "open")


def test_completion_and_failure_events_have_one_id_per_group() -> None:
    done = {**JOINED, "type": "group.completed", "how": "full", "returned": "0"}
    done["members"] = '["l","u1","u2"]'
    event = outbox_event(7, done)
    assert event.id == event_id_for("group.completed", GID)
    assert event.data["members"] == ["l", "u1", "u2"] and event.data["how"] == "full"
    failed = {**done, "type": "group.failed", "returned": "3"}
    assert outbox_event(7, failed).id == event_id_for("group.failed", GID)
    with pytest.raises(ValueError):
        outbox_event(7, {**JOINED, "type": "group.bogus"})


def test_the_share_card_counts_slots_only_while_open() -> None:
    state = {"state": "open", "size": "3", "opened": "1900000000000", "deadline": "1900003600000"}
    card = group_view(GID, state, ["l", "u1"], viewer="u1")
    assert (card["slots_left"], card["joined"], card["campaign_id"]) == (1, 2, 7)
    assert group_view(GID, {**state, "state": "failed"}, ["l"], viewer="l")["slots_left"] == 0


def test_the_share_card_names_members_only_to_members_and_admins() -> None:
    state = {"state": "open", "size": "3", "opened": "1900000000000", "deadline": "1900003600000"}
    names = [m["user_id"] for m in group_view(GID, state, ["l", "u1"], viewer="l")["members"]]
    assert names == ["l", "u1"]
    stranger = group_view(GID, state, ["l", "u1"], viewer="x")["members"]
    assert [(m["user_id"], m["role"], m["you"]) for m in stranger] == [
        (None, "leader", False),
        (None, "member", False),
    ]
    admin = group_view(GID, state, ["l"], viewer="ops", viewer_is_admin=True)["members"]
    assert admin[0]["user_id"] == "l"
