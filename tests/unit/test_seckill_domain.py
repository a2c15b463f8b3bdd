"""Flash-sale rules: activity validation and status, path ids, reservation ids, refusals
and the outbox events, checked without Redis, PostgreSQL or Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import DomainError, ValidationError
from services.common.events import SECKILL_RELEASED, SECKILL_RESERVED, event_id_for
from services.seckill.domain import (
    MAX_PAYMENT_TIMEOUT_SECONDS,
    MAX_PER_USER_LIMIT,
    MAX_PRICE_CENTS,
    MAX_STOCK,
    Activity,
    NewActivity,
    Outcome,
    Status,
    activity_of_reservation,
    activity_status,
    new_reservation_id,
    outbox_event,
    parse_activity_id,
    parse_new_activity,
    parse_quantity,
    refusal,
)

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
STARTS = NOW + timedelta(minutes=5)
ENDS = NOW + timedelta(hours=1)
HEX32 = "0123456789abcdef" * 2


def body(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sku": "sku-1",
        "title": "Limited tea set",
        "price_cents": 9900,
        "stock": 10,
        "starts_at": "2030-06-01T12:05:00Z",
        "ends_at": "2030-06-01T13:00:00Z",
        "per_user_limit": 2,
        "payment_timeout_seconds": 600,
    }
    raw.update(overrides)
    return raw


def without(*names: str) -> dict[str, Any]:
    raw = body()
    for name in names:
        del raw[name]
    return raw


def refused(raw: dict[str, Any], now: datetime = NOW) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_new_activity(raw, now)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_request"
    return caught.value


def activity(starts_at: datetime = STARTS, ends_at: datetime = ENDS) -> Activity:
    return Activity(
        id=42,
        sku="sku-1",
        title="Limited tea set",
        price_cents=9900,
        stock=10,
        starts_at=starts_at,
        ends_at=ends_at,
        per_user_limit=1,
        payment_timeout_seconds=900,
    )


# --- parse_new_activity ---------------------------------------------------------------


def test_a_complete_activity_body_becomes_an_exact_new_activity() -> None:
    assert parse_new_activity(body(), NOW) == NewActivity(
        sku="sku-1",
        title="Limited tea set",
        price_cents=9900,
        stock=10,
        starts_at=STARTS,
        ends_at=ENDS,
        per_user_limit=2,
        payment_timeout_seconds=600,
    )


def test_per_user_limit_and_payment_timeout_default_to_one_and_fifteen_minutes() -> None:
    new = parse_new_activity(without("per_user_limit", "payment_timeout_seconds"), NOW)
    assert new.per_user_limit == 1
    assert new.payment_timeout_seconds == 900


def test_sku_and_title_are_trimmed_of_surrounding_whitespace() -> None:
    new = parse_new_activity(body(sku="  sku-1\t", title="\n Limited tea set  "), NOW)
    assert new.sku == "sku-1"
    assert new.title == "Limited tea set"


def test_timestamps_with_an_offset_are_converted_to_utc() -> None:
    new = parse_new_activity(
        body(starts_at="2030-06-01T20:05:00+08:00", ends_at="2030-06-01T08:00:00-05:00"), NOW
    )
    assert new.starts_at == STARTS
    assert new.ends_at == ENDS
    assert new.starts_at.tzinfo == UTC
    assert new.ends_at.tzinfo == UTC


def test_a_start_in_the_past_is_accepted_when_the_end_is_ahead() -> None:
    new = parse_new_activity(body(starts_at="2020-01-01T00:00:00Z"), NOW)
    assert new.starts_at == datetime(2020, 1, 1, tzinfo=UTC)


def test_an_unknown_field_is_refused_by_name() -> None:
    error = refused(body(colour="red"))
    assert error.field == "colour"
    assert error.message == "colour: unknown field"


def test_of_several_unknown_fields_the_first_in_sorted_order_is_named() -> None:
    assert refused(body(zeta=1, alpha=2)).field == "alpha"


@pytest.mark.parametrize("name", ["sku", "title", "price_cents", "stock", "starts_at", "ends_at"])
def test_a_missing_required_field_is_refused_as_required(name: str) -> None:
    error = refused(without(name))
    assert error.field == name
    assert error.message == f"{name}: is required"


@pytest.mark.parametrize("name", ["sku", "price_cents", "per_user_limit", "ends_at"])
def test_an_explicit_null_is_refused_as_required(name: str) -> None:
    assert refused(body(**{name: None})).message == f"{name}: is required"


@pytest.mark.parametrize(
    "name", ["price_cents", "stock", "per_user_limit", "payment_timeout_seconds"]
)
@pytest.mark.parametrize("value", [True, False, 5.0, 5.5, "5", [5], {"n": 5}])
def test_an_integer_field_refuses_bools_floats_strings_and_containers(
    name: str, value: Any
) -> None:
    error = refused(body(**{name: value}))
    assert error.field == name
    assert error.message == f"{name}: must be an integer"


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("price_cents", 0, MAX_PRICE_CENTS),
        ("stock", 1, MAX_STOCK),
        ("per_user_limit", 1, MAX_PER_USER_LIMIT),
        ("payment_timeout_seconds", 1, MAX_PAYMENT_TIMEOUT_SECONDS),
    ],
)
def test_an_integer_field_accepts_its_bounds_and_refuses_one_beyond(
    name: str, low: int, high: int
) -> None:
    assert getattr(parse_new_activity(body(**{name: low}), NOW), name) == low
    assert getattr(parse_new_activity(body(**{name: high}), NOW), name) == high
    for outside in (low - 1, high + 1):
        error = refused(body(**{name: outside}))
        assert error.field == name
        assert error.message == f"{name}: must be between {low} and {high}"


def test_the_bounds_are_those_the_platform_documents() -> None:
    assert (MAX_STOCK, MAX_PER_USER_LIMIT, MAX_PRICE_CENTS) == (10_000_000, 100, 10**12)
    assert MAX_PAYMENT_TIMEOUT_SECONDS == 604_800


@pytest.mark.parametrize("name", ["sku", "title"])
@pytest.mark.parametrize("value", ["", "   ", "\t\n", 7, True, ["sku"]])
def test_a_text_field_refuses_blank_strings_and_non_strings(name: str, value: Any) -> None:
    error = refused(body(**{name: value}))
    assert error.field == name
    assert error.message == f"{name}: must be a non-empty string"


@pytest.mark.parametrize(("name", "limit"), [("sku", 64), ("title", 200)])
def test_a_text_field_accepts_its_maximum_length_and_refuses_one_more(
    name: str, limit: int
) -> None:
    assert getattr(parse_new_activity(body(**{name: "x" * limit}), NOW), name) == "x" * limit
    error = refused(body(**{name: "x" * (limit + 1)}))
    assert error.message == f"{name}: must be at most {limit} characters"


@pytest.mark.parametrize("name", ["starts_at", "ends_at"])
@pytest.mark.parametrize("value", ["2030-06-01T12:05:00", "2030-06-01 12:05:00", "2030-06-01"])
def test_a_timestamp_without_a_time_zone_is_refused(name: str, value: str) -> None:
    error = refused(body(**{name: value}))
    assert error.field == name
    assert error.message == f"{name}: must carry a time zone (for example 'Z')"


@pytest.mark.parametrize("name", ["starts_at", "ends_at"])
@pytest.mark.parametrize("value", ["tomorrow", "", "2030-13-01T00:00:00Z", "1718000000"])
def test_a_timestamp_that_does_not_parse_is_refused(name: str, value: str) -> None:
    error = refused(body(**{name: value}))
    assert error.field == name
    assert error.message == f"{name}: must be an RFC 3339 timestamp"


@pytest.mark.parametrize("name", ["starts_at", "ends_at"])
@pytest.mark.parametrize("value", [1_900_000_000, 1.5, True, ["2030-06-01T12:05:00Z"]])
def test_a_timestamp_that_is_not_a_string_is_refused(name: str, value: Any) -> None:
    error = refused(body(**{name: value}))
    assert error.field == name
    assert error.message == f"{name}: must be an RFC 3339 timestamp string"


def test_an_end_equal_to_the_start_is_refused() -> None:
    error = refused(body(starts_at="2030-06-01T13:00:00Z", ends_at="2030-06-01T13:00:00Z"))
    assert error.field == "ends_at"
    assert error.message == "ends_at: must be after starts_at"


def test_an_end_before_the_start_is_refused_even_across_time_zones() -> None:
    # 13:30+02:00 is 11:30Z: before a 12:05Z start although its wall clock reads later.
    error = refused(body(ends_at="2030-06-01T13:30:00+02:00"))
    assert error.message == "ends_at: must be after starts_at"


def test_an_end_in_the_past_is_refused() -> None:
    error = refused(body(starts_at="2020-01-01T00:00:00Z", ends_at="2020-01-02T00:00:00Z"))
    assert error.field == "ends_at"
    assert error.message == "ends_at: must be in the future"


def test_an_end_exactly_now_is_refused_and_one_microsecond_later_is_accepted() -> None:
    raw = body(starts_at="2030-06-01T11:00:00Z", ends_at="2030-06-01T13:00:00Z")
    end = datetime(2030, 6, 1, 13, 0, 0, tzinfo=UTC)
    assert refused(raw, now=end).message == "ends_at: must be in the future"
    assert parse_new_activity(raw, end - timedelta(microseconds=1)).ends_at == end


# --- activity_status ------------------------------------------------------------------


def test_an_activity_before_its_start_is_upcoming() -> None:
    assert activity_status(activity(), 10, STARTS - timedelta(microseconds=1)) is Status.UPCOMING


def test_an_activity_exactly_at_its_start_is_live() -> None:
    assert activity_status(activity(), 10, STARTS) is Status.LIVE


def test_a_started_activity_without_remaining_stock_is_sold_out() -> None:
    assert activity_status(activity(), 0, STARTS) is Status.SOLD_OUT
    assert activity_status(activity(), -3, STARTS) is Status.SOLD_OUT


def test_an_upcoming_activity_without_stock_is_still_upcoming() -> None:
    assert activity_status(activity(), 0, NOW) is Status.UPCOMING


def test_an_activity_exactly_at_its_end_is_ended() -> None:
    assert activity_status(activity(), 10, ENDS - timedelta(microseconds=1)) is Status.LIVE
    assert activity_status(activity(), 10, ENDS) is Status.ENDED


def test_an_ended_activity_is_ended_whatever_its_stock() -> None:
    assert activity_status(activity(), 0, ENDS + timedelta(days=1)) is Status.ENDED


def test_status_values_are_the_strings_the_api_returns() -> None:
    assert [s.value for s in Status] == ["upcoming", "live", "sold_out", "ended"]


# --- parse_quantity -------------------------------------------------------------------


def test_an_empty_reservation_body_asks_for_one() -> None:
    assert parse_quantity({}) == 1


@pytest.mark.parametrize("quantity", [1, 7, MAX_PER_USER_LIMIT])
def test_a_quantity_within_the_cap_is_taken_as_is(quantity: int) -> None:
    assert parse_quantity({"quantity": quantity}) == quantity


@pytest.mark.parametrize("quantity", [0, -1, MAX_PER_USER_LIMIT + 1])
def test_a_quantity_outside_one_to_the_cap_is_refused(quantity: int) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_quantity({"quantity": quantity})
    assert caught.value.field == "quantity"
    assert caught.value.message == f"quantity: must be between 1 and {MAX_PER_USER_LIMIT}"


@pytest.mark.parametrize("quantity", [True, 2.0, "2", [2]])
def test_a_quantity_that_is_not_an_integer_is_refused(quantity: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_quantity({"quantity": quantity})
    assert caught.value.message == "quantity: must be an integer"


def test_a_null_quantity_is_refused_as_required() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_quantity({"quantity": None})
    assert caught.value.message == "quantity: is required"


def test_a_reservation_body_with_another_field_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_quantity({"quantity": 1, "user_id": "someone-else"})
    assert caught.value.field == "user_id"
    assert caught.value.message == "user_id: unknown field"


# --- parse_activity_id ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), ("42", 42), ("0042", 42), ("9" * 18, 10**18 - 1)],
)
def test_a_positive_ascii_decimal_names_an_activity(raw: str, expected: int) -> None:
    assert parse_activity_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "4a",
        "4.2",
        "1e3",
        " 42",
        "42 ",
        "+42",
        "-42",
        "0",
        "000",
        "４２",  # fullwidth digits
        "٤",  # Arabic-Indic four
        "²",  # superscript two: str.isdigit() says True
        "9" * 19,
        "9" * 1000,
    ],
)
def test_anything_else_names_no_activity(raw: str) -> None:
    assert parse_activity_id(raw) is None


# --- reservation ids ------------------------------------------------------------------


@settings(database=None, max_examples=200)
@given(st.integers(min_value=1, max_value=10**18 - 1))
def test_a_reservation_id_names_the_activity_it_was_made_for(activity_id: int) -> None:
    assert activity_of_reservation(new_reservation_id(activity_id)) == activity_id


def test_a_reservation_id_is_the_activity_id_and_a_random_uuid_hex() -> None:
    first, second = new_reservation_id(42), new_reservation_id(42)
    assert first != second
    head, _, tail = first.partition("-")
    assert head == "42"
    assert uuid.UUID(hex=tail).hex == tail


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "42",
        "42-",
        f"-{HEX32}",
        f"42{HEX32}",
        f"42-{HEX32[:-1]}",
        f"42-{HEX32}0",
        f"42-{HEX32.upper()}",
        f"42-{HEX32[:-1]}g",
        f"42-{uuid.UUID(hex=HEX32)}",  # the hyphenated form is not the one issued
        f"0-{HEX32}",
        f"abc-{HEX32}",
        f"４２-{HEX32}",
        f"{'9' * 19}-{HEX32}",
        f"42-{HEX32}-1",
    ],
)
def test_a_malformed_reservation_id_names_no_activity(raw: str) -> None:
    assert activity_of_reservation(raw) is None


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "code", "headers"),
    [
        (Outcome.NOT_FOUND, 404, "not_found", {}),
        (Outcome.NOT_STARTED, 409, "not_started", {}),
        (Outcome.ENDED, 410, "sale_ended", {}),
        (Outcome.RATE_LIMITED, 429, "rate_limited", {"Retry-After": "1"}),
        (Outcome.LIMIT_REACHED, 409, "limit_reached", {}),
        (Outcome.SOLD_OUT, 410, "sold_out", {}),
    ],
)
def test_each_refusal_has_its_status_code_and_error_code(
    outcome: Outcome, status: int, code: str, headers: dict[str, str]
) -> None:
    error = refusal(outcome)
    assert type(error) is DomainError
    assert (error.status, error.code, error.headers) == (status, code, headers)
    assert error.message


def test_every_outcome_but_reserved_has_a_refusal() -> None:
    refusals = {o for o in Outcome if o is not Outcome.RESERVED}
    assert all(isinstance(refusal(o), DomainError) for o in refusals)
    assert len(refusals) == len(Outcome) - 1


def test_a_reservation_is_not_a_refusal() -> None:
    with pytest.raises(ValueError, match=r"is not a refusal"):
        refusal(Outcome.RESERVED)


def test_outcomes_are_the_words_the_reserve_script_answers() -> None:
    assert Outcome("ok") is Outcome.RESERVED
    assert Outcome("sold_out") is Outcome.SOLD_OUT


# --- outbox events --------------------------------------------------------------------

RID = f"42-{HEX32}"
AT_MS = 1_900_000_000_123  # 2030-03-17T17:46:40.123Z
DEADLINE_MS = AT_MS + 900_000


def reserved_entry(**overrides: str) -> dict[str, str]:
    entry = {
        "type": SECKILL_RESERVED,
        "rid": RID,
        "user": "u-1",
        "qty": "2",
        "at": str(AT_MS),
        "deadline": str(DEADLINE_MS),
        "price": "9900",
        "sku": "sku-1",
    }
    entry.update(overrides)
    return entry


def released_entry(**overrides: str) -> dict[str, str]:
    entry = {
        "type": SECKILL_RELEASED,
        "rid": RID,
        "user": "u-1",
        "qty": "2",
        "reason": "timeout",
        "at": str(AT_MS),
    }
    entry.update(overrides)
    return entry


def test_a_reserved_entry_becomes_a_seckill_reserved_event() -> None:
    event = outbox_event(42, reserved_entry())
    assert event.id == event_id_for(SECKILL_RESERVED, RID)
    assert event.type == "seckill.reserved"
    assert event.key == "u-1"
    assert event.at == "2030-03-17T17:46:40.123Z"
    assert event.v == 1
    assert event.data == {
        "reservation_id": RID,
        "activity_id": 42,
        "user_id": "u-1",
        "quantity": 2,
        "sku": "sku-1",
        "unit_price_cents": 9900,
        "reserved_at": "2030-03-17T17:46:40.123Z",
        "pay_before": "2030-03-17T18:01:40.123Z",
    }


def test_a_released_entry_becomes_a_seckill_released_event() -> None:
    event = outbox_event(42, released_entry())
    assert event.id == event_id_for(SECKILL_RELEASED, RID)
    assert event.type == "seckill.released"
    assert event.key == "u-1"
    assert event.at == "2030-03-17T17:46:40.123Z"
    assert event.data == {
        "reservation_id": RID,
        "activity_id": 42,
        "user_id": "u-1",
        "quantity": 2,
        "reason": "timeout",
        "released_at": "2030-03-17T17:46:40.123Z",
    }


def test_publishing_the_same_entry_twice_yields_the_same_event() -> None:
    assert outbox_event(42, reserved_entry()) == outbox_event(42, reserved_entry())
    assert outbox_event(42, released_entry()).id == outbox_event(42, released_entry()).id


def test_another_reservation_yields_another_event_id() -> None:
    other = f"42-{'f' * 32}"
    assert outbox_event(42, reserved_entry(rid=other)).id != outbox_event(42, reserved_entry()).id


def test_the_release_of_a_reservation_has_another_id_than_its_reservation() -> None:
    assert outbox_event(42, released_entry()).id != outbox_event(42, reserved_entry()).id


def test_an_outbox_entry_of_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown outbox entry type 'seckill.mystery'"):
        outbox_event(42, reserved_entry(type="seckill.mystery"))


def test_event_times_are_the_epoch_milliseconds_of_the_entry() -> None:
    event = outbox_event(7, reserved_entry())
    assert datetime.fromisoformat(event.at) == datetime(
        2030, 3, 17, 17, 46, 40, 123_000, tzinfo=UTC
    )


def test_a_reservation_names_the_order_the_order_service_will_create_for_it() -> None:
    from services.order.domain import NewOrder, order_from_reservation
    from services.seckill.domain import Reservation, reservation_state_view

    view = Reservation(RID, 42, 2, AT_MS).view()
    created: NewOrder = order_from_reservation(outbox_event(42, reserved_entry()).data)
    assert view["order_id"] == str(created.id)
    record = {"state": "reserved", "qty": "2", "at": str(AT_MS), "deadline": str(AT_MS)}
    assert reservation_state_view(RID, record)["order_id"] == view["order_id"]
