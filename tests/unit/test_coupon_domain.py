"""Coupon rules without I/O: template validation, state and views, edits, the Redis
settings, claim refusals, and the events of the outbox with the rows they record."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import ValidationError
from services.common.events import COUPON_CLAIMED, COUPON_GRANTED, Envelope, event_id_for
from services.common.sales import SaleState
from services.coupon.domain import (
    CLAIM_RESULTS,
    NEW_TEMPLATE_FIELDS,
    CouponCounts,
    Outcome,
    Template,
    Validity,
    admin_view,
    claim_status,
    creation_values,
    figures_view,
    held_state,
    issued_coupon,
    outbox_event,
    parse_edit,
    parse_new_template,
    parse_quantity,
    redis_meta,
    refusal,
    template_state,
    template_view,
)
from services.coupon.terms import Kind, Scope

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "30 off 200",
        "kind": "amount_off",
        "amount_off_cents": 3000,
        "threshold_cents": 20000,
        "validity": "relative",
        "valid_days": 7,
        "quantity": 100,
        "claim_starts_at": (NOW + HOUR).isoformat(),
        "claim_ends_at": (NOW + 2 * HOUR).isoformat(),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def template(**overrides: Any) -> Template:
    new = parse_new_template(body(**overrides), NOW)
    return Template(id=42, **{name: getattr(new, name) for name in NEW_TEMPLATE_FIELDS})


def refused_field(values: dict[str, Any], now: datetime = NOW) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_new_template(values, now)
    return caught.value.field


def test_an_amount_off_template_takes_its_defaults() -> None:
    new = parse_new_template(body(), NOW)
    assert (new.kind, new.amount_off_cents, new.threshold_cents) == (Kind.AMOUNT_OFF, 3000, 20000)
    assert (new.per_user_limit, new.claimable, new.scope, new.usable_on_flash_sales) == (
        1,
        True,
        Scope.ANY,
        False,
    )
    assert (new.validity, new.valid_days, new.valid_from) == (Validity.RELATIVE, 7, None)
    assert new.terms.kind is Kind.AMOUNT_OFF and new.terms.scope_ids == ()


def test_a_percent_off_template_needs_its_cap_and_may_leave_the_threshold_out() -> None:
    values = body(
        kind="percent_off",
        amount_off_cents=None,
        threshold_cents=None,
        percent_off=15,
        max_discount_cents=5000,
    )
    new = parse_new_template(values, NOW)
    assert (new.percent_off, new.max_discount_cents, new.threshold_cents) == (15, 5000, 0)
    assert new.amount_off_cents is None
    assert refused_field({**values, "max_discount_cents": None}) == "max_discount_cents"
    del values["max_discount_cents"]
    assert refused_field(values) == "max_discount_cents"
    for percent in (0, 100):
        assert refused_field({**values, "percent_off": percent}) == "percent_off"


def test_a_no_threshold_template_takes_only_its_amount() -> None:
    values = body(kind="no_threshold", threshold_cents=None)
    new = parse_new_template(values, NOW)
    assert (new.amount_off_cents, new.threshold_cents) == (3000, 0)
    assert refused_field({**values, "threshold_cents": 0}) == "threshold_cents"
    assert refused_field({**values, "percent_off": 5}) == "percent_off"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"threshold_cents": 3000}, "threshold_cents"),
        ({"threshold_cents": None}, "threshold_cents"),
        ({"amount_off_cents": 0}, "amount_off_cents"),
        ({"amount_off_cents": 10**12 + 1}, "amount_off_cents"),
        ({"kind": None}, "kind"),
        ({"kind": 1}, "kind"),
        ({"name": " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": 10_000_001}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"per_user_limit": 101}, "per_user_limit"),
        ({"validity": "forever"}, "validity"),
        ({"valid_days": 0}, "valid_days"),
        ({"valid_days": 3651}, "valid_days"),
        ({"valid_until": (NOW + 3 * HOUR).isoformat()}, "valid_until"),
        ({"claim_ends_at": NOW.isoformat()}, "claim_ends_at"),
        ({"claim_ends_at": (NOW - HOUR).isoformat()}, "claim_ends_at"),
        ({"claim_starts_at": "tomorrow"}, "claim_starts_at"),
        ({"claimable": False}, "claim_ends_at"),
        ({"claimable": None}, "claimable"),
        ({"scope": "shops"}, "scope"),
        ({"scope_ids": ["1"]}, "scope_ids"),
        ({"scope": "activities"}, "scope_ids"),
        ({"scope": "activities", "scope_ids": []}, "scope_ids"),
        ({"scope": "activities", "scope_ids": [0]}, "scope_ids"),
        ({"scope": "campaigns", "scope_ids": [True]}, "scope_ids"),
        ({"scope": "campaigns", "scope_ids": ["-1"]}, "scope_ids"),
        ({"scope": "campaigns", "scope_ids": [2**63]}, "scope_ids"),
        ({"scope": "skus", "scope_ids": ["x" * 65]}, "scope_ids"),
        ({"scope": "skus", "scope_ids": ["a\x00"]}, "scope_ids"),
        ({"scope": "skus", "scope_ids": ["a"] * 101}, "scope_ids"),
        ({"scope": "skus", "scope_ids": "a"}, "scope_ids"),
        ({"usable_on_flash_sales": "no"}, "usable_on_flash_sales"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_bad_field_is_refused_by_name(overrides: dict[str, Any], field: str) -> None:
    assert refused_field({**body(), **overrides}) == field


def test_a_fixed_validity_needs_its_dates_and_claims_ending_within_them() -> None:
    fixed = body(
        validity="fixed",
        valid_days=None,
        valid_from=NOW.isoformat(),
        valid_until=(NOW + 30 * 24 * HOUR).isoformat(),
    )
    new = parse_new_template(fixed, NOW)
    assert (new.valid_from, new.valid_until, new.valid_days) == (NOW, NOW + 720 * HOUR, None)
    assert refused_field({**fixed, "valid_days": 3}) == "valid_days"
    assert refused_field({**fixed, "valid_until": NOW.isoformat()}) == "valid_until"
    late = {**fixed, "valid_until": (NOW + 90 * timedelta(minutes=1)).isoformat()}
    assert refused_field(late) == "claim_ends_at"  # the claims end after the coupons do
    past = {**fixed, "valid_from": (NOW - 48 * HOUR).isoformat()}
    past["valid_until"] = (NOW - 24 * HOUR).isoformat()
    assert refused_field(past) == "valid_until"
    assert refused_field({**body(), "valid_from": NOW.isoformat()}) == "valid_from"


def test_a_template_only_granted_takes_no_claim_window() -> None:
    new = parse_new_template(body(claimable=False, claim_starts_at=None, claim_ends_at=None), NOW)
    assert (new.claimable, new.claim_starts_at, new.claim_ends_at) == (False, None, None)


def test_scope_ids_are_kept_as_text_once_each() -> None:
    new = parse_new_template(body(scope="activities", scope_ids=[7, "8", 7, "0008"]), NOW)
    assert new.scope_ids == ("7", "8")
    skus = parse_new_template(body(scope="skus", scope_ids=[" tea-1 ", "tea-2"]), NOW)
    assert skus.scope_ids == ("tea-1", "tea-2")


def test_the_state_follows_the_claim_window_or_for_grants_only_the_end() -> None:
    t = template()
    assert template_state(t, NOW) is SaleState.UPCOMING
    assert template_state(t, NOW + HOUR) is SaleState.LIVE
    assert template_state(t, NOW + 2 * HOUR) is SaleState.ENDED
    assert template_state(replace(t, ended_early_at=NOW), NOW) is SaleState.ENDED
    granted = template(claimable=False, claim_starts_at=None, claim_ends_at=None)
    assert template_state(granted, NOW + 1000 * HOUR) is SaleState.LIVE
    assert template_state(replace(granted, ended_early_at=NOW), NOW) is SaleState.ENDED


def test_a_shopper_sees_upcoming_live_exhausted_or_ended() -> None:
    t = template()
    assert claim_status(t, 5, NOW) == "upcoming"
    assert claim_status(t, 5, NOW + HOUR) == "live"
    assert claim_status(t, 0, NOW + HOUR) == "exhausted"
    assert claim_status(t, 5, NOW + 3 * HOUR) == "ended"
    assert claim_status(replace(t, ended_early_at=NOW), 5, NOW + HOUR) == "ended"
    granted = template(claimable=False, claim_starts_at=None, claim_ends_at=None)
    assert claim_status(granted, 5, NOW) == "not_claimable"


def test_the_views_show_terms_validity_and_for_merchants_the_state() -> None:
    t = replace(template(scope="skus", scope_ids=["a"]), created_by="ops", created_at=NOW)
    view = template_view(t, -1, NOW + HOUR)
    assert view["remaining"] == 0 and view["status"] == "exhausted"
    assert (view["scope"], view["scope_ids"], view["valid_days"]) == ("skus", ["a"], 7)
    assert view["claim_starts_at"] == "2030-06-01T13:00:00.000Z"
    admin = admin_view(t, 3, NOW)
    assert {k: admin[k] for k in ("state", "warm_up", "created_by", "ended_early_at")} == {
        "state": "upcoming",
        "warm_up": "pending",
        "created_by": "ops",
        "ended_early_at": None,
    }
    assert set(admin) - set(view) == {
        "state",
        "ended_early_at",
        "warm_up",
        "created_by",
        "created_at",
    }


def test_figures_fall_back_to_postgresql_s_quantity_when_redis_has_none() -> None:
    t = template(quantity=10)
    counts = CouponCounts(claimed=3, available=2, used=1)
    figures = figures_view(t, 12, 4, counts, NOW + HOUR)
    assert (figures["quantity"], figures["remaining"], figures["issued"]) == (12, 4, 8)
    assert (figures["claimed"], figures["available"], figures["used"]) == (3, 2, 1)
    missing = figures_view(t, None, None, counts, NOW)
    assert (missing["quantity"], missing["remaining"], missing["issued"]) == (10, None, None)


def test_the_redis_meta_holds_exactly_the_fields_the_scripts_read() -> None:
    t = template()
    assert redis_meta(t) == {
        "claimable": "1",
        "starts_ms": int((NOW + HOUR).timestamp() * 1000),
        "ends_ms": int((NOW + 2 * HOUR).timestamp() * 1000),
        "limit": 1,
        "validity": "relative",
        "days": 7,
        "total": 100,
        "closed": "",
    }
    fixed = template(
        validity="fixed",
        valid_days=None,
        valid_from=NOW.isoformat(),
        valid_until=(NOW + 48 * HOUR).isoformat(),
        claimable=False,
        claim_starts_at=None,
        claim_ends_at=None,
    )
    meta = redis_meta(replace(fixed, ended_early_at=NOW))
    assert (meta["claimable"], meta["starts_ms"], meta["ends_ms"], meta["closed"]) == (
        "0",
        0,
        0,
        "ended",
    )
    assert (meta["from_ms"], meta["until_ms"]) == (
        int(NOW.timestamp() * 1000),
        int((NOW + 48 * HOUR).timestamp() * 1000),
    )
    assert "days" not in meta


def test_an_edit_is_validated_on_the_template_as_it_would_become() -> None:
    t = template(scope="skus", scope_ids=["a"])
    edited = parse_edit(t, {"name": "New", "quantity": 5}, NOW)
    assert (edited.name, edited.quantity, edited.amount_off_cents) == ("New", 5, 3000)
    assert parse_edit(t, {"scope": "any"}, NOW).scope_ids == ()
    assert parse_edit(t, {"scope": "activities", "scope_ids": [3]}, NOW).scope_ids == ("3",)
    for changes, field in (
        ({"kind": "percent_off"}, "kind"),
        ({"validity": "fixed"}, "validity"),
        ({"claimable": False}, "claimable"),
        ({}, "body"),
        ({"id": 3}, "id"),
        ({"amount_off_cents": 20000}, "threshold_cents"),
        ({"scope": "campaigns"}, "scope_ids"),
    ):
        with pytest.raises(ValidationError) as caught:
            parse_edit(t, changes, NOW)
        assert caught.value.field == field, changes
    assert parse_new_template(creation_values(t), NOW) == parse_new_template(
        body(scope="skus", scope_ids=["a"]), NOW
    )


def test_the_quantity_body_is_one_bounded_integer() -> None:
    assert parse_quantity({"quantity": 7}) == 7
    for bad in ({"quantity": 0}, {"quantity": "7"}, {}, {"quantity": 7, "stock": 1}):
        with pytest.raises(ValidationError):
            parse_quantity(bad)


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (Outcome.NOT_FOUND, 404, "not_found"),
        (Outcome.NOT_STARTED, 409, "not_started"),
        (Outcome.ENDED, 410, "claim_ended"),
        (Outcome.EXHAUSTED, 410, "exhausted"),
        (Outcome.LIMIT_REACHED, 409, "limit_reached"),
        (Outcome.RATE_LIMITED, 429, "rate_limited"),
    ],
)
def test_each_refused_claim_maps_to_its_status_and_code(
    outcome: Outcome, status: int, code: str
) -> None:
    error = refusal(outcome)
    assert (error.status, error.code) == (status, code)
    assert ("Retry-After" in error.headers) is (status == 429)


def test_a_claim_is_no_refusal_and_every_result_is_a_metric_label() -> None:
    with pytest.raises(ValueError, match="not a refusal"):
        refusal(Outcome.CLAIMED)
    assert set(CLAIM_RESULTS) == {
        "claimed",
        "not_found",
        "not_started",
        "claim_ended",
        "exhausted",
        "limit_reached",
        "rate_limited",
        "outcome_unknown",
        "redis_unavailable",
    }


def _entry(kind: str, **extra: str) -> dict[str, str]:
    return {
        "type": kind,
        "cid": f"42-{'a' * 32}",
        "user": "u1",
        "from": "1906545600000",
        "until": "1907150400000",
        "at": "1906545600123",
        **extra,
    }


def test_a_claim_s_outbox_entry_becomes_its_coupon_claimed_event() -> None:
    event = outbox_event(42, _entry(COUPON_CLAIMED))
    assert (event.type, event.key, event.at) == (COUPON_CLAIMED, "u1", "2030-06-01T12:00:00.123Z")
    assert event.id == event_id_for(COUPON_CLAIMED, f"42-{'a' * 32}")
    assert event.data == {
        "coupon_id": f"42-{'a' * 32}",
        "template_id": 42,
        "user_id": "u1",
        "valid_from": "2030-06-01T12:00:00.000Z",
        "valid_until": "2030-06-08T12:00:00.000Z",
        "issued_at": "2030-06-01T12:00:00.123Z",
    }
    assert outbox_event(42, _entry(COUPON_CLAIMED)) == event  # a re-publish is the same event


def test_a_grant_s_outbox_entry_carries_its_order_and_rule() -> None:
    order = str(uuid.uuid4())
    event = outbox_event(42, _entry(COUPON_GRANTED, order=order, rule="9"))
    assert event.id == event_id_for(COUPON_GRANTED, f"42-{'a' * 32}")
    assert (event.data["order_id"], event.data["rule_id"]) == (order, 9)
    with pytest.raises(ValueError, match="unknown outbox entry"):
        outbox_event(42, _entry("coupon.used"))


def test_the_events_record_their_coupon_rows_and_refuse_what_cannot_be_one() -> None:
    claimed = outbox_event(42, _entry(COUPON_CLAIMED))
    row = issued_coupon(claimed)
    assert (row.coupon_id, row.template_id, row.user_id, row.origin) == (
        f"42-{'a' * 32}",
        42,
        "u1",
        "claim",
    )
    assert row.valid_until - row.valid_from == timedelta(days=7)
    assert (row.grant_order_id, row.grant_rule_id) == (None, None)
    order = uuid.uuid4()
    granted = issued_coupon(outbox_event(42, _entry(COUPON_GRANTED, order=str(order), rule="9")))
    assert (granted.origin, granted.grant_order_id, granted.grant_rule_id) == ("grant", order, 9)
    bad_data: list[dict[str, Any]] = [
        {"template_id": 43},
        {"template_id": "42"},
        {"coupon_id": "nope"},
        {"user_id": 7},
        {"user_id": "u\x00"},
        {"valid_until": claimed.data["valid_from"]},
        {"valid_from": "yesterday"},
        {"valid_from": "2030-06-01T12:00:00"},
        {"issued_at": None},
    ]
    for change in bad_data:
        event = replace(claimed, data={**claimed.data, **change})
        with pytest.raises((ValueError, TypeError, KeyError)):
            issued_coupon(event)
    grant = outbox_event(42, _entry(COUPON_GRANTED, order=str(order), rule="9"))
    for change in ({"rule_id": "9"}, {"rule_id": 0}, {"order_id": "x"}, {"order_id": None}):
        with pytest.raises((ValueError, TypeError, KeyError, AttributeError)):
            issued_coupon(replace(grant, data={**grant.data, **change}))
    with pytest.raises(ValueError, match="issues no coupon"):
        issued_coupon(Envelope("x", "coupon.used", "u1", claimed.data))


def test_an_available_coupon_past_its_end_is_expired_to_its_holder() -> None:
    assert held_state("available", NOW, NOW) == "expired"
    assert held_state("available", NOW + HOUR, NOW) == "available"
    assert held_state("used", NOW - HOUR, NOW) == "used"
