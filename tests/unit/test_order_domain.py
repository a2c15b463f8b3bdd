"""Order rules: an order from a seckill.reserved event, its order.created event and the
query parameters of the order API, checked without PostgreSQL or Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.common.errors import ValidationError
from services.common.events import ORDER_CREATED, event_id_for
from services.order.domain import (
    MAX_LIST_LIMIT,
    InvalidReservation,
    NewOrder,
    order_created_event,
    order_from_reservation,
    order_id_for,
    parse_list_limit,
    parse_order_id,
)

RID = "42-0123456789abcdef0123456789abcdef"
RESERVED_AT = datetime(2030, 3, 17, 17, 46, 40, 123_000, tzinfo=UTC)
PAY_BEFORE = RESERVED_AT + timedelta(minutes=15)


def reserved(**overrides: Any) -> dict[str, Any]:
    """The data of a seckill.reserved event as the seckill outbox relay publishes it."""
    data: dict[str, Any] = {
        "reservation_id": RID,
        "activity_id": 42,
        "user_id": "u-1",
        "quantity": 3,
        "sku": "sku-1",
        "unit_price_cents": 9900,
        "reserved_at": "2030-03-17T17:46:40.123Z",
        "pay_before": "2030-03-17T18:01:40.123Z",
    }
    data.update(overrides)
    return data


def without(name: str) -> dict[str, Any]:
    data = reserved()
    del data[name]
    return data


# --- order_from_reservation -----------------------------------------------------------


def test_a_reserved_event_becomes_an_exact_new_order() -> None:
    assert order_from_reservation(reserved()) == NewOrder(
        id=order_id_for(RID),
        reservation_id=RID,
        activity_id=42,
        user_id="u-1",
        sku="sku-1",
        quantity=3,
        unit_price_cents=9900,
        reserved_at=RESERVED_AT,
        pay_before=PAY_BEFORE,
    )


def test_the_amount_is_the_unit_price_times_the_quantity() -> None:
    assert order_from_reservation(reserved()).amount_cents == 29_700
    assert order_from_reservation(reserved(unit_price_cents=0)).amount_cents == 0


def test_a_free_item_is_a_valid_order() -> None:
    assert order_from_reservation(reserved(unit_price_cents=0)).unit_price_cents == 0


def test_fields_the_order_does_not_use_are_ignored() -> None:
    assert order_from_reservation(reserved(extra="x")) == order_from_reservation(reserved())


def test_a_timestamp_with_an_offset_keeps_its_instant() -> None:
    order = order_from_reservation(reserved(reserved_at="2030-03-18T01:46:40.123+08:00"))
    assert order.reserved_at == RESERVED_AT
    assert order.reserved_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    "name",
    [
        "reservation_id",
        "activity_id",
        "user_id",
        "sku",
        "quantity",
        "unit_price_cents",
        "reserved_at",
        "pay_before",
    ],
)
def test_a_reservation_missing_a_field_is_invalid(name: str) -> None:
    with pytest.raises(InvalidReservation, match=f"^{name} must be "):
        order_from_reservation(without(name))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("reservation_id", 42),
        ("reservation_id", None),
        ("activity_id", "42"),
        ("activity_id", 42.0),
        ("activity_id", True),
        ("user_id", 7),
        ("user_id", None),
        ("sku", ["sku-1"]),
        ("quantity", "3"),
        ("quantity", 3.0),
        ("quantity", True),
        ("unit_price_cents", "9900"),
        ("unit_price_cents", 99.5),
        ("unit_price_cents", False),
        ("reserved_at", 1_900_000_000_123),
        ("pay_before", None),
    ],
)
def test_a_reservation_field_of_the_wrong_type_is_invalid(name: str, value: Any) -> None:
    with pytest.raises(InvalidReservation, match=f"^{name} must be (str|int), got "):
        order_from_reservation(reserved(**{name: value}))


@pytest.mark.parametrize("reservation_id", ["", "x" * 101])
def test_a_reservation_id_that_is_empty_or_longer_than_100_is_invalid(
    reservation_id: str,
) -> None:
    with pytest.raises(InvalidReservation, match="reservation_id must be 1 to 100 characters"):
        order_from_reservation(reserved(reservation_id=reservation_id))


def test_a_reservation_id_of_exactly_100_characters_is_valid() -> None:
    assert order_from_reservation(reserved(reservation_id="x" * 100)).reservation_id == "x" * 100


@pytest.mark.parametrize("quantity", [0, -1, 2**31])
def test_a_quantity_out_of_the_column_range_is_invalid(quantity: int) -> None:
    with pytest.raises(InvalidReservation, match="quantity and activity_id must be positive"):
        order_from_reservation(reserved(quantity=quantity))


@pytest.mark.parametrize("activity_id", [0, -3, 2**63])
def test_an_activity_id_out_of_the_column_range_is_invalid(activity_id: int) -> None:
    with pytest.raises(InvalidReservation, match="quantity and activity_id must be positive"):
        order_from_reservation(reserved(activity_id=activity_id))


@pytest.mark.parametrize("price", [-1, 2**62])
def test_a_negative_price_or_an_amount_beyond_bigint_is_invalid(price: int) -> None:
    with pytest.raises(InvalidReservation, match="unit_price_cents must be >= 0"):
        order_from_reservation(reserved(quantity=3, unit_price_cents=price))


@pytest.mark.parametrize("field", ["user_id", "sku"])
def test_an_empty_user_or_sku_is_invalid(field: str) -> None:
    with pytest.raises(InvalidReservation, match="user_id and sku must not be empty"):
        order_from_reservation(reserved(**{field: ""}))


def test_a_payment_deadline_not_after_the_reservation_is_invalid() -> None:
    data = reserved()
    with pytest.raises(InvalidReservation, match="pay_before must be after reserved_at"):
        order_from_reservation({**data, "pay_before": data["reserved_at"]})


@pytest.mark.parametrize("name", ["reserved_at", "pay_before"])
@pytest.mark.parametrize("value", ["", "soon", "2030-02-30T00:00:00Z"])
def test_a_timestamp_that_does_not_parse_is_invalid(name: str, value: str) -> None:
    with pytest.raises(InvalidReservation, match=f"^{name} is not a timestamp"):
        order_from_reservation(reserved(**{name: value}))


@pytest.mark.parametrize("name", ["reserved_at", "pay_before"])
def test_a_timestamp_without_a_time_zone_is_invalid(name: str) -> None:
    with pytest.raises(InvalidReservation, match=f"^{name} has no time zone$"):
        order_from_reservation(reserved(**{name: "2030-03-17T17:46:40.123"}))


def test_an_invalid_reservation_is_a_value_error() -> None:
    assert issubclass(InvalidReservation, ValueError)


# --- order ids ------------------------------------------------------------------------


def test_a_reservation_always_maps_to_the_same_order_id() -> None:
    assert order_id_for(RID) == order_id_for(RID)
    assert order_from_reservation(reserved()).id == order_from_reservation(reserved()).id


def test_different_reservations_map_to_different_order_ids() -> None:
    assert order_id_for(RID) != order_id_for(RID.replace("42-", "43-"))


def test_an_order_id_is_a_name_based_uuid() -> None:
    assert order_id_for(RID).version == 5


# --- order.created --------------------------------------------------------------------


def test_a_new_order_announces_itself_with_an_order_created_event() -> None:
    order = order_from_reservation(reserved())
    event = order_created_event(order)
    oid = str(order_id_for(RID))
    assert event.id == event_id_for(ORDER_CREATED, oid)
    assert event.type == "order.created"
    assert event.key == oid
    assert event.v == 1
    assert event.data == {
        "order_id": oid,
        "reservation_id": RID,
        "activity_id": 42,
        "user_id": "u-1",
        "sku": "sku-1",
        "quantity": 3,
        "amount_cents": 29_700,
        "pay_before": "2030-03-17T18:01:40.123Z",
    }


def test_the_order_created_event_of_a_redelivered_reservation_has_the_same_id() -> None:
    first = order_created_event(order_from_reservation(reserved()))
    again = order_created_event(order_from_reservation(reserved()))
    assert first.id == again.id
    assert first.data == again.data


def test_the_pay_before_of_order_created_is_in_utc() -> None:
    order = order_from_reservation(
        reserved(
            pay_before=datetime(
                2030, 3, 18, 2, 1, 40, 123_000, timezone(timedelta(hours=8))
            ).isoformat()
        )
    )
    assert order_created_event(order).data["pay_before"] == "2030-03-17T18:01:40.123Z"


# --- parse_list_limit -----------------------------------------------------------------


def test_no_limit_lists_twenty_orders() -> None:
    assert parse_list_limit(None) == 20


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("50", 50), ("100", 100), ("007", 7)])
def test_a_limit_from_one_to_one_hundred_is_taken(raw: str, expected: int) -> None:
    assert parse_list_limit(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "0", "101", "-1", "+5", " 5", "5.0", "ten", "５", "٥", "9" * 50]
)
def test_any_other_limit_is_refused_naming_the_parameter(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_list_limit(raw)
    assert caught.value.field == "limit"
    assert caught.value.status == 400
    assert caught.value.message == f"limit: must be an integer between 1 and {MAX_LIST_LIMIT}"


# --- parse_order_id -------------------------------------------------------------------


def test_a_canonical_uuid_names_an_order() -> None:
    oid = order_id_for(RID)
    assert parse_order_id(str(oid)) == oid
    assert parse_order_id(str(oid).upper()) == oid
    assert parse_order_id(oid.hex) == oid


@pytest.mark.parametrize(
    "raw", ["", "42", "not-a-uuid", "12345678-1234-5678-1234-56781234567", "g" * 32]
)
def test_anything_but_a_uuid_names_no_order(raw: str) -> None:
    assert parse_order_id(raw) is None
