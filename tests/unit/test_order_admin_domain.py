"""The order console's rules without PostgreSQL: search and sale parameters, refund
states and marking, an order's history, figures, and seckill.cancelled."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import DomainError, ValidationError
from services.order.domain import (
    InvalidReservation,
    Order,
    Payment,
    RefundState,
    SaleRef,
    figures_view,
    must_mark_refund,
    order_history,
    parse_order_search,
    parse_refund_id,
    parse_sale_ref,
    refund_state,
    sale_cancellation_from_event,
)

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
OID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def order(**overrides: Any) -> Order:
    values: dict[str, Any] = {
        "id": OID,
        "reservation_id": "1-r",
        "activity_id": 1,
        "user_id": "alice",
        "sku": "tea",
        "quantity": 1,
        "unit_price_cents": 500,
        "amount_cents": 500,
        "state": "pending_payment",
        "cancel_reason": None,
        "reserved_at": T0,
        "pay_before": T0 + timedelta(minutes=15),
        "created_at": T0,
    }
    values.update(overrides)
    return Order(**values)


def payment(**overrides: Any) -> Payment:
    values: dict[str, Any] = {
        "transaction_id": "txn-1",
        "order_id": OID,
        "amount_cents": 500,
        "outcome": "applied",
        "refund_reason": None,
        "received_at": T0 + timedelta(minutes=1),
    }
    values.update(overrides)
    return Payment(**values)


PAID = order(state="paid", paid_at=T0 + timedelta(minutes=1))
LATE = payment(outcome="refund_requested", refund_reason="order_cancelled")
CANCELLED = order(state="cancelled", cancel_reason="user", cancelled_at=T0 + timedelta(seconds=30))
GROUP_FAILED = order(
    state="cancelled",
    cancel_reason="group_failed",
    paid_at=T0 + timedelta(minutes=1),
    cancelled_at=T0 + timedelta(minutes=5),
    source="groupbuy",
    group_id="g1",
    group_state="failed",
)


def test_an_empty_search_is_the_first_page_of_everything() -> None:
    search = parse_order_search({})
    assert (search.page.limit, search.page.offset) == (20, 0)
    assert (search.order_id, search.user_id, search.source, search.sale_id, search.state) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_every_search_filter_is_parsed() -> None:
    search = parse_order_search(
        {
            "order_id": str(OID),
            "user_id": "alice",
            "source": "groupbuy",
            "sale_id": "12",
            "state": "paid",
            "limit": "5",
            "offset": "10",
        }
    )
    assert (search.order_id, search.user_id, search.source, search.sale_id, search.state) == (
        OID,
        "alice",
        "groupbuy",
        12,
        "paid",
    )
    assert (search.page.limit, search.page.offset) == (5, 10)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"order_id": "x"}, "order_id"),
        ({"sale_id": "1e3"}, "sale_id"),
        ({"sale_id": "99999999999999999999"}, "sale_id"),
        ({"state": "refunded"}, "state"),
        ({"page": "2"}, "page"),
    ],
)
def test_a_bad_search_names_its_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_order_search(query)
    assert caught.value.field == field


def test_a_sale_needs_both_its_source_and_its_id() -> None:
    assert parse_sale_ref({"source": "seckill", "sale_id": "7"}) == SaleRef("seckill", 7)
    for query, field in [
        ({"sale_id": "7"}, "source"),
        ({"source": "seckill"}, "sale_id"),
        ({"source": "seckill", "sale_id": ""}, "sale_id"),
    ]:
        with pytest.raises(ValidationError) as caught:
            parse_sale_ref(query)
        assert caught.value.field == field


def test_figures_count_every_order_as_created() -> None:
    view = figures_view(SaleRef("seckill", 7), {"paid": 2, "cancelled": 3}, T0)
    assert view == {
        "source": "seckill",
        "sale_id": 7,
        "created": 5,
        "pending_payment": 0,
        "paid": 2,
        "cancelled": 3,
        "at": "2030-01-01T12:00:00.000Z",
    }


def test_refunds_are_requested_for_late_payments_and_failed_groups_paid_orders_only() -> None:
    assert refund_state(payment(), PAID) is RefundState.NONE
    assert refund_state(LATE, CANCELLED) is RefundState.REQUESTED
    assert refund_state(payment(), GROUP_FAILED) is RefundState.REQUESTED
    # An unpaid group order cancelled with its group had nothing to refund.
    unpaid_group = dataclasses.replace(GROUP_FAILED, paid_at=None)
    assert refund_state(payment(), unpaid_group) is RefundState.NONE
    marked = dataclasses.replace(LATE, refunded_at=T0, refund_id="RF-1", refunded_by="m:1")
    assert refund_state(marked, CANCELLED) is RefundState.REFUNDED


def test_marking_a_refund_is_idempotent_on_its_refund_id() -> None:
    assert must_mark_refund(LATE, CANCELLED, "RF-1") is True
    marked = dataclasses.replace(LATE, refunded_at=T0, refund_id="RF-1", refunded_by="m:1")
    assert must_mark_refund(marked, CANCELLED, "RF-1") is False
    with pytest.raises(DomainError) as caught:
        must_mark_refund(marked, CANCELLED, "RF-2")
    assert (caught.value.status, caught.value.code) == (409, "already_refunded")
    with pytest.raises(DomainError) as caught:
        must_mark_refund(payment(), PAID, "RF-1")
    assert (caught.value.status, caught.value.code) == (409, "refund_not_requested")


@pytest.mark.parametrize("refund_id", ["", " RF", "RF\t1", "R" * 65, None, 7])
def test_a_refund_id_is_one_to_64_printable_characters(refund_id: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_refund_id({"refund_id": refund_id})
    assert caught.value.field == "refund_id"
    assert parse_refund_id({"refund_id": "4200001234 2030/01/01"}) == "4200001234 2030/01/01"


def test_a_failed_groups_history_reads_in_the_order_things_happened() -> None:
    marked = payment(refunded_at=T0 + timedelta(hours=1), refund_id="RF-G", refunded_by="m:1")
    history = order_history(GROUP_FAILED, [marked])
    assert [(h["at"], h["event"]) for h in history] == [
        ("2030-01-01T12:00:00.000Z", "created"),
        ("2030-01-01T12:01:00.000Z", "paid"),
        # Same instant: the cancellation, then the refund it asked for.
        ("2030-01-01T12:05:00.000Z", "cancelled"),
        ("2030-01-01T12:05:00.000Z", "payment_refund_requested"),
        ("2030-01-01T13:00:00.000Z", "refunded"),
    ]
    assert history[3]["reason"] == "group_failed" and history[4]["refund_id"] == "RF-G"


def test_a_late_payments_refund_is_asked_for_when_it_arrives() -> None:
    late = dataclasses.replace(LATE, received_at=T0 + timedelta(minutes=20))
    history = order_history(CANCELLED, [late])
    assert [(h["event"], h.get("reason")) for h in history] == [
        ("created", None),
        ("cancelled", "user"),
        ("payment_refund_requested", "order_cancelled"),
    ]
    assert history[2]["at"] == "2030-01-01T12:20:00.000Z"


def test_a_seckill_cancelled_event_names_its_activity_and_time() -> None:
    cancelled = sale_cancellation_from_event(
        {"activity_id": 42, "cancelled_at": "2030-01-01T12:00:00.000Z"}
    )
    assert (cancelled.source, cancelled.sale_id, cancelled.cancelled_at) == ("seckill", 42, T0)
    for bad in (
        {"activity_id": "42", "cancelled_at": "2030-01-01T12:00:00Z"},
        {"activity_id": 0, "cancelled_at": "2030-01-01T12:00:00Z"},
        {"activity_id": 42},
        {"activity_id": 42, "cancelled_at": "2030-01-01T12:00:00"},
    ):
        with pytest.raises(InvalidReservation):
            sale_cancellation_from_event(bad)
