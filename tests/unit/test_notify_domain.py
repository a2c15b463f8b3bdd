"""Notify rules without I/O: templates, consent requests, error codes, backoff, limits,
recipients (the openid a message goes to)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import DomainError
from services.common.events import Envelope, event_id_for
from services.notify.domain import (
    TEMPLATES,
    ConsentKind,
    InvalidEvent,
    Recipient,
    RecipientWait,
    SendOutcome,
    backoff_seconds,
    classify_errcode,
    classify_http_status,
    dead_letter_event,
    group_members,
    intents_for,
    next_step,
    parse_subscription,
    parse_template_ids,
    rate_limit_allows,
    recipient_from,
    recipient_unknown_reason,
    recipient_wait,
    render,
    sale_starting_intent,
    touser_for,
)


def order_event(kind: str = "order.paid", **data: object) -> Envelope:
    body: dict[str, object] = {
        "order_id": "0b6f3c1e-0000-4000-8000-000000000001",
        "reservation_id": "a42-r1",
        "activity_id": 42,
        "user_id": "u1",
        "sku": "tea-set",
        "quantity": 1,
        "amount_cents": 9900,
        "paid_at": "2026-11-23T10:00:00Z",
        "transaction_id": "tx1",
    }
    body.update(data)
    return Envelope(id=event_id_for(kind, "o1"), type=kind, key="o1", data=body)


def test_an_order_paid_event_renders_the_order_paid_template_for_its_user() -> None:
    [intent] = intents_for(order_event())
    assert intent.user_id == "u1"
    assert intent.template == "order_paid"
    assert intent.scope == "activity:42"
    assert intent.data == {
        "character_string1": {"value": "0b6f3c1e000040008000000000000001"},
        "thing2": {"value": "tea-set"},
        "amount3": {"value": "¥99.00"},
        "time4": {"value": "2026-11-23 10:00"},
    }
    assert intent.page == "pages/order/detail?id=0b6f3c1e-0000-4000-8000-000000000001"


def test_each_order_and_reservation_event_maps_to_its_template() -> None:
    mapped = {
        kind: intents_for(
            order_event(
                kind,
                pay_before="2026-11-23T10:15:00Z",
                reason="timeout",
                cancelled_at="2026-11-23T10:15:00Z",
            )
        )[0].template
        for kind in ("order.paid", "order.payment_due", "order.cancelled", "seckill.reserved")
    }
    assert mapped == {
        "order.paid": "order_paid",
        "order.payment_due": "payment_due",
        "order.cancelled": "order_cancelled",
        "seckill.reserved": "reservation_confirmed",
    }


def test_events_without_a_template_ask_for_nothing() -> None:
    assert intents_for(order_event("order.created")) == []
    assert intents_for(order_event("group.opened", group_id="g1")) == []


def test_a_missing_field_is_an_invalid_event_naming_it() -> None:
    with pytest.raises(InvalidEvent, match="paid_at"):
        intents_for(order_event(paid_at=None))
    with pytest.raises(InvalidEvent, match="user_id"):
        intents_for(order_event(user_id=""))


def test_long_text_is_cut_to_the_providers_limit() -> None:
    data, _ = render(
        TEMPLATES["order_cancelled"],
        {
            "order_id": "o" * 40,
            "sku": "s" * 30,
            "reason": "user",
            "cancelled_at": "2026-01-01T00:00Z",
        },
    )
    assert len(data["thing2"]["value"]) == 20
    assert data["character_string1"]["value"] == "o" * 32


def test_a_completed_group_messages_every_member_and_tolerates_extra_fields() -> None:
    event = Envelope(
        id="e1",
        type="group.completed",
        key="g1",
        data={
            "group_id": "g1",
            "campaign_id": 7,
            "members": [{"user_id": "u1", "joined_at": "x"}, "u2", {"user_id": "u1"}],
            "leader_id": "u3",
            "virtual": True,
            "something_new": {"nested": 1},
        },
    )
    intents = intents_for(event)
    assert [i.user_id for i in intents] == ["u1", "u2", "u3"]
    assert {i.template for i in intents} == {"group_completed"}
    assert {i.scope for i in intents} == {"group:g1"}
    failed = Envelope(
        id="e2",
        type="group.failed",
        key="g2",
        data={"group_id": "g2", "campaign_id": "c1", "member_ids": ["u9"]},
    )
    assert [(i.user_id, i.template) for i in intents_for(failed)] == [("u9", "group_failed")]


def test_member_ids_are_found_under_any_of_the_spellings() -> None:
    assert group_members({"user_ids": ["a", "b"]}) == ["a", "b"]
    assert group_members({"member_user_ids": ["a"], "leader_user_id": "c"}) == ["a", "c"]
    assert group_members({"members": [1, None, {"id": "z"}]}) == ["z"]


def test_a_group_event_without_members_is_invalid() -> None:
    event = Envelope(id="e", type="group.failed", key="g", data={"group_id": "g", "campaign_id": 1})
    with pytest.raises(InvalidEvent):
        intents_for(event)


def test_the_sale_reminder_is_one_event_per_activity() -> None:
    starts = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    a = sale_starting_intent(42, "Tea", starts, "u1", starts)
    b = sale_starting_intent(42, "Tea", starts, "u2", starts)
    c = sale_starting_intent(43, "Tea", starts, "u1", starts)
    assert a.event_id == b.event_id != c.event_id
    assert a.scope == "activity:42" and a.data["time2"] == {"value": "2026-11-23 12:00"}


def test_a_subscription_request_is_parsed_with_one_time_as_the_default() -> None:
    sub = parse_subscription("u1", {"template": "order_paid"})
    assert (sub.template, sub.kind, sub.scope) == ("order_paid", ConsentKind.ONE_TIME, "")
    scoped = parse_subscription(
        "u1", {"template": "sale_starting", "activity_id": 5, "kind": "long_term"}
    )
    assert (scoped.scope, scoped.kind) == ("activity:5", ConsentKind.LONG_TERM)
    group = parse_subscription("u1", {"template": "group_completed", "group_id": "g-1"})
    assert group.scope == "group:g-1"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"template": "nope"}, "unknown_template"),
        ({"template": "order_paid", "kind": "forever"}, "invalid_request"),
        ({"template": "order_paid", "activity_id": "5"}, "invalid_request"),
        ({"template": "order_paid", "activity_id": True}, "invalid_request"),
        ({"template": "order_paid", "group_id": "g1"}, "invalid_request"),
        ({"template": "group_failed", "group_id": "bad id!"}, "invalid_request"),
        ({"template": "sale_starting"}, "invalid_request"),
        ({"template": "order_paid", "extra": 1}, "invalid_request"),
    ],
)
def test_bad_subscription_requests_are_refused_with_a_code(
    body: dict[str, object], code: str
) -> None:
    with pytest.raises(DomainError) as err:
        parse_subscription("u1", body)
    assert err.value.status == 400 and err.value.code == code


def test_provider_error_codes_are_classified() -> None:
    assert classify_errcode(0) is SendOutcome.SENT
    assert classify_errcode(43101) is SendOutcome.REFUSED
    for code in (-1, 40001, 40014, 42001, 45009):
        assert classify_errcode(code) is SendOutcome.RETRYABLE
    for code in (40003, 47003, 40037):
        assert classify_errcode(code) is SendOutcome.PERMANENT
    assert classify_errcode(99999) is SendOutcome.RETRYABLE
    assert classify_http_status(200) is None
    assert classify_http_status(502) is SendOutcome.RETRYABLE
    assert classify_http_status(429) is SendOutcome.RETRYABLE
    assert classify_http_status(404) is SendOutcome.PERMANENT


def test_a_refusal_is_never_retried_and_the_last_attempt_is_dead() -> None:
    assert next_step(SendOutcome.REFUSED, 1, 5) == "refused"
    assert next_step(SendOutcome.PERMANENT, 1, 5) == "dead"
    assert next_step(SendOutcome.RETRYABLE, 4, 5) == "retry"
    assert next_step(SendOutcome.RETRYABLE, 5, 5) == "dead"


@given(st.integers(1, 40), st.floats(0.01, 10), st.floats(1, 1000))
def test_backoff_grows_exponentially_with_jitter_within_bounds(
    attempt: int, base: float, cap: float
) -> None:
    ceiling = min(cap, base * 2 ** (attempt - 1))
    delay = backoff_seconds(attempt, base, cap)
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_uses_the_whole_jitter_range() -> None:
    assert backoff_seconds(3, 1.0, 100, rand=lambda lo, hi: lo) == 2.0
    assert backoff_seconds(3, 1.0, 100, rand=lambda lo, hi: hi) == 4.0
    assert backoff_seconds(30, 1.0, 60, rand=lambda lo, hi: hi) == 60


def test_the_rate_limit_allows_up_to_the_limit_and_zero_turns_it_off() -> None:
    assert rate_limit_allows(4, 5)
    assert not rate_limit_allows(5, 5)
    assert rate_limit_allows(10_000, 0)


def test_provider_template_ids_come_from_config() -> None:
    assert parse_template_ids(" order_paid=AbC , payment_due=XyZ") == {
        "order_paid": "AbC",
        "payment_due": "XyZ",
    }
    assert parse_template_ids("") == {}
    with pytest.raises(ValueError):
        parse_template_ids("nope=1")
    with pytest.raises(ValueError):
        parse_template_ids("order_paid")


def test_a_dead_letter_keeps_its_id_when_published_again() -> None:
    now = datetime.now(UTC)
    a = dead_letter_event("e1", "order.paid", "u1", "order_paid", 5, "busy", {}, now)
    b = dead_letter_event("e1", "order.paid", "u1", "order_paid", 5, "busy", {}, now)
    assert a.id == b.id and a.key == "u1" and a.data["attempts"] == 5


def registration(**data: object) -> Envelope:
    body: dict[str, object] = {
        "user_id": "u1",
        "openid": "oAbc123",
        "appid": "wx-app",
        "unionid": None,
        "registered_at": "2026-11-01T09:00:00Z",
    }
    body.update(data)
    return Envelope(
        id=event_id_for("user.registered", "wx-app:oAbc123"),
        type="user.registered",
        key="u1",
        data=body,
    )


def test_a_registration_gives_the_users_openid_under_its_appid() -> None:
    assert recipient_from(registration(unionid="uX")) == Recipient(
        "u1", "wx-app", "oAbc123", "uX", datetime(2026, 11, 1, 9, tzinfo=UTC)
    )
    assert recipient_from(registration()) == Recipient(
        "u1", "wx-app", "oAbc123", None, datetime(2026, 11, 1, 9, tzinfo=UTC)
    )


def test_other_users_events_register_nobody() -> None:
    other = Envelope(id="e", type="user.deleted", key="u1", data={"user_id": "u1"})
    assert recipient_from(other) is None


@pytest.mark.parametrize(
    "data",
    [
        {"openid": None},
        {"openid": ""},
        {"user_id": 7},
        {"user_id": "u" * 129},
        {"appid": None},
        {"unionid": 5},
        {"registered_at": None},
        {"registered_at": "yesterday"},
        {"registered_at": "2026-11-01T09:00:00"},
    ],
)
def test_a_registration_notify_cannot_trust_is_an_invalid_event(data: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent):
        recipient_from(registration(**data))


def test_the_http_channel_sends_to_the_openid_and_never_to_our_user_id() -> None:
    assert touser_for("u1", "oAbc123", "http") == "oAbc123"
    assert touser_for("u1", None, "http") is None
    # The log channel (local runs) names whoever it knows.
    assert touser_for("u1", "oAbc123", "log") == "oAbc123"
    assert touser_for("u1", None, "log") == "u1"


def test_only_channels_that_address_openids_make_messages_wait() -> None:
    assert recipient_wait("http", "wx-app", 300.0) == RecipientWait("wx-app", 300.0)
    assert recipient_wait("http", "wx-app", -1.0) == RecipientWait("wx-app", 0.0)
    assert recipient_wait("log", "wx-app", 300.0) is None


def test_the_recipient_unknown_reason_names_the_user_and_the_appid() -> None:
    assert recipient_unknown_reason("u9", "wx-app") == (
        "recipient_unknown: no openid known for user u9 (appid wx-app)"
    )


# --- coupons (topic coupons, docs/coupons.md) ------------------------------------------

COUPON_ID = "7-0123456789abcdef0123456789abcdef"


def coupon_event(kind: str = "coupon.expiring", **data: object) -> Envelope:
    """coupon.expiring as the coupon service's sweeper publishes it."""
    body: dict[str, object] = {
        "coupon_id": COUPON_ID,
        "user_id": "u1",
        "template_id": 7,
        "name": "10 off tea sets over 99",
        "valid_until": "2026-11-24T16:00:00Z",
    }
    body.update(data)
    return Envelope(id=event_id_for(kind, COUPON_ID), type=kind, key="u1", data=body)


def test_an_expiring_coupon_asks_its_holder_for_one_unscoped_coupon_expiring_message() -> None:
    [intent] = intents_for(coupon_event())
    assert (intent.user_id, intent.template, intent.scope) == ("u1", "coupon_expiring", "")
    assert intent.event_id == event_id_for("coupon.expiring", COUPON_ID)
    assert intent.data == {
        "thing1": {"value": "10 off tea sets ove…"},
        "time2": {"value": "2026-11-24 16:00"},
    }
    assert intent.page == f"pages/coupon/detail?id={COUPON_ID}"


@pytest.mark.parametrize(
    "kind",
    [
        "coupon.claimed",
        "coupon.granted",
        "coupon.locked",
        "coupon.used",
        "coupon.released",
        "coupon.revoked",
        "coupon.expired",
    ],
)
def test_other_coupon_events_ask_for_no_message(kind: str) -> None:
    assert intents_for(coupon_event(kind)) == []


@pytest.mark.parametrize("missing", ["user_id", "name", "valid_until", "coupon_id"])
def test_an_expiring_coupon_without_a_field_its_message_needs_is_invalid(missing: str) -> None:
    event = coupon_event()
    del event.data[missing]
    with pytest.raises(InvalidEvent):
        intents_for(event)


def test_consent_to_coupon_expiring_is_about_no_sale_or_group() -> None:
    sub = parse_subscription("u1", {"template": "coupon_expiring", "kind": "long_term"})
    assert (sub.template, sub.scope) == ("coupon_expiring", "")
    for scoped in ({"activity_id": 5}, {"group_id": "g1"}):
        with pytest.raises(DomainError) as err:
            parse_subscription("u1", {"template": "coupon_expiring", **scoped})
        assert err.value.code == "invalid_request"
