"""The merchant's rules for a flash sale, without Redis or PostgreSQL: its state, what an
edit may change, the stock rule, when it may be ended or cancelled, the board's figures
and the cancellation event."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import DomainError, ValidationError
from services.common.events import SECKILL_CANCELLED, event_id_for
from services.common.sale_cache import SaleCache
from services.common.sales import SaleState
from services.seckill.domain import (
    Activity,
    Closing,
    activity_status,
    admin_view,
    apply_edit,
    check_closable,
    check_editable,
    check_stock_settable,
    live_figures,
    outbox_event,
    parse_edit,
    parse_set_stock,
    redis_meta,
    sale_state,
    stock_after,
)

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
STARTS = NOW + timedelta(minutes=5)
ENDS = NOW + timedelta(hours=1)


def activity(**overrides: Any) -> Activity:
    base = Activity(
        id=42,
        sku="sku-1",
        title="Limited tea set",
        price_cents=9900,
        stock=10,
        starts_at=STARTS,
        ends_at=ENDS,
        per_user_limit=1,
        payment_timeout_seconds=900,
        created_at=NOW - timedelta(days=1),
        warmed_at=NOW - timedelta(days=1),
    )
    return replace(base, **overrides)


def refused(error: type[DomainError], call: Any, *args: Any) -> DomainError:
    with pytest.raises(error) as caught:
        call(*args)
    return caught.value


# --- state ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "overrides", "state"),
    [
        (STARTS - timedelta(microseconds=1), {}, SaleState.UPCOMING),
        (STARTS, {}, SaleState.LIVE),
        (ENDS - timedelta(microseconds=1), {}, SaleState.LIVE),
        (ENDS, {}, SaleState.ENDED),
        (STARTS + timedelta(minutes=1), {"ended_early_at": STARTS}, SaleState.ENDED),
        (NOW, {"cancelled_at": NOW}, SaleState.CANCELLED),
        (ENDS + timedelta(days=1), {"cancelled_at": NOW}, SaleState.CANCELLED),
    ],
)
def test_a_sale_is_in_exactly_one_state(
    now: datetime, overrides: dict[str, Any], state: SaleState
) -> None:
    assert sale_state(activity(**overrides), now) is state


def test_shoppers_see_a_sale_ended_early_or_cancelled_as_ended() -> None:
    during = STARTS + timedelta(minutes=10)
    assert activity_status(activity(), 5, during).value == "live"
    assert activity_status(activity(ended_early_at=STARTS), 5, during).value == "ended"
    assert activity_status(activity(cancelled_at=NOW), 5, during).value == "ended"


def test_the_admin_view_adds_state_ending_cancellation_warm_up_and_creation() -> None:
    view = admin_view(activity(cancelled_at=NOW, warmed_at=None), 10, NOW)
    assert {
        k: view[k] for k in ("state", "ended_early", "cancelled_at", "warm_up", "created_at")
    } == {
        "state": "cancelled",
        "ended_early": False,
        "cancelled_at": "2030-06-01T12:00:00.000Z",
        "warm_up": "pending",
        "created_at": "2030-05-31T12:00:00.000Z",
    }


def test_the_redis_settings_keep_an_early_end_and_a_cancellation() -> None:
    # A rebuild of the Redis state warms from these: it must not open the sale again.
    early = STARTS + timedelta(minutes=1)
    meta = redis_meta(activity(ended_early_at=early))
    assert meta["ends_ms"] == meta["ended_early"] == int(early.timestamp() * 1000)
    assert meta["total"] == 10
    assert redis_meta(activity(cancelled_at=NOW))["cancelled"] == int(NOW.timestamp() * 1000)
    assert "cancelled" not in redis_meta(activity())


# --- edit -----------------------------------------------------------------------------


def test_an_edit_takes_any_subset_of_the_editable_fields() -> None:
    assert parse_edit({"title": " New ", "stock": 20, "starts_at": "2030-06-01T12:10:00Z"}) == {
        "title": "New",
        "stock": 20,
        "starts_at": NOW + timedelta(minutes=10),
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"sku": "sku-2"}, "sku"),
        ({"sku": "sku-2", "title": "x"}, "sku"),
        ({"colour": "red"}, "colour"),
        ({"stock": 0}, "stock"),
        ({"stock": True}, "stock"),
        ({"price_cents": -1}, "price_cents"),
        ({"per_user_limit": 101}, "per_user_limit"),
        ({"payment_timeout_seconds": 0}, "payment_timeout_seconds"),
        ({"ends_at": "tomorrow"}, "ends_at"),
        ({"title": None}, "title"),
    ],
)
def test_a_bad_edit_names_its_field(body: dict[str, Any], field: str) -> None:
    assert refused(ValidationError, parse_edit, body).field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ends_at": STARTS}, "ends_at"),
        ({"starts_at": ENDS}, "starts_at"),
        ({"starts_at": NOW - timedelta(hours=2), "ends_at": NOW}, "ends_at"),
    ],
)
def test_an_edit_keeps_the_window_valid(changes: dict[str, Any], field: str) -> None:
    error = refused(ValidationError, apply_edit, activity(), changes, NOW)
    assert error.field == field  # type: ignore[attr-defined]


def test_an_edit_changes_only_what_it_names() -> None:
    edited = apply_edit(activity(), {"price_cents": 500, "per_user_limit": 2}, NOW)
    assert edited == activity(price_cents=500, per_user_limit=2)


@pytest.mark.parametrize(
    ("now", "overrides", "code"),
    [
        (STARTS, {}, "already_started"),
        (ENDS, {}, "sale_closed"),
        (NOW, {"cancelled_at": NOW}, "sale_closed"),
        (NOW, {"warmed_at": None}, "warm_up_pending"),
    ],
)
def test_only_an_upcoming_warmed_sale_is_editable(
    now: datetime, overrides: dict[str, Any], code: str
) -> None:
    error = refused(DomainError, check_editable, activity(**overrides), now)
    assert (error.status, error.code) == (409, code)


def test_an_upcoming_warmed_sale_is_editable() -> None:
    check_editable(activity(), NOW)


# --- stock ----------------------------------------------------------------------------


@given(
    total=st.integers(1, 1000),
    taken=st.integers(0, 1000),
    wanted=st.integers(1, 2000),
)
def test_the_units_taken_stay_taken_whatever_the_new_total(
    total: int, taken: int, wanted: int
) -> None:
    taken = min(taken, total)
    after = stock_after(total, total - taken, wanted)
    if wanted < taken:
        assert after is None
    else:
        assert after is not None and after + taken == wanted and after >= 0


def test_setting_the_same_total_changes_nothing() -> None:
    assert stock_after(10, 4, 10) == 4


@pytest.mark.parametrize(
    ("body", "field"), [({}, "stock"), ({"stock": 0}, "stock"), ({"stock": 3, "qty": 1}, "qty")]
)
def test_a_bad_stock_body_names_its_field(body: dict[str, Any], field: str) -> None:
    assert refused(ValidationError, parse_set_stock, body).field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("now", "overrides", "code"),
    [
        (ENDS, {}, "sale_closed"),
        (STARTS, {"ended_early_at": STARTS}, "sale_closed"),
        (NOW, {"cancelled_at": NOW}, "sale_closed"),
        (NOW, {"warmed_at": None}, "warm_up_pending"),
    ],
)
def test_the_stock_of_a_closed_or_unwarmed_sale_cannot_be_set(
    now: datetime, overrides: dict[str, Any], code: str
) -> None:
    error = refused(DomainError, check_stock_settable, activity(**overrides), now)
    assert (error.status, error.code) == (409, code)


@pytest.mark.parametrize("now", [NOW, STARTS])
def test_the_stock_of_an_upcoming_or_live_sale_can_be_set(now: datetime) -> None:
    check_stock_settable(activity(), now)


# --- end and cancel -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("closing", "now", "overrides", "expected"),
    [
        (Closing.END, STARTS, {}, True),
        (Closing.END, STARTS, {"ended_early_at": STARTS}, False),
        (Closing.END, NOW, {}, "not_live"),
        (Closing.END, ENDS, {}, "not_live"),
        (Closing.END, STARTS, {"cancelled_at": NOW}, "not_live"),
        (Closing.CANCEL, NOW, {}, True),
        (Closing.CANCEL, STARTS, {}, True),
        (Closing.CANCEL, STARTS, {"cancelled_at": NOW}, False),
        (Closing.CANCEL, ENDS, {}, "sale_closed"),
        (Closing.CANCEL, STARTS, {"ended_early_at": STARTS}, "sale_closed"),
        (Closing.CANCEL, NOW, {"warmed_at": None}, "warm_up_pending"),
    ],
)
def test_end_takes_a_live_sale_and_cancel_an_upcoming_or_live_one(
    closing: Closing, now: datetime, overrides: dict[str, Any], expected: bool | str
) -> None:
    if isinstance(expected, bool):
        assert check_closable(activity(**overrides), closing, now) is expected
    else:
        error = refused(DomainError, check_closable, activity(**overrides), closing, now)
        assert (error.status, error.code) == (409, expected)


def test_the_cancellation_event_is_keyed_by_the_sale_with_a_stable_id() -> None:
    at_ms = int(NOW.timestamp() * 1000)
    event = outbox_event(42, {"type": SECKILL_CANCELLED, "at": str(at_ms)})
    assert (event.id, event.type, event.key, event.at, event.data) == (
        event_id_for(SECKILL_CANCELLED, "a42"),
        SECKILL_CANCELLED,
        "a42",
        "2030-06-01T12:00:00.000Z",
        {"activity_id": 42, "cancelled_at": "2030-06-01T12:00:00.000Z"},
    )


# --- figures --------------------------------------------------------------------------


def test_the_figures_take_the_redis_total_and_count_the_units_taken() -> None:
    figures = live_figures(activity(), 12, 5, 6, 40, 20, STARTS)
    assert figures == {
        "activity_id": 42,
        "state": "live",
        "stock": 12,
        "remaining": 5,
        "reserved_units": 7,
        "reservations": 6,
        "presses": 40,
        "sold_out_answers": 20,
        "at": "2030-06-01T12:05:00.000Z",
    }
    assert live_figures(activity(), None, 10, 0, 0, 0, NOW)["stock"] == 10


# --- the shoppers' activity cache ------------------------------------------------------


async def test_a_cached_activity_is_read_again_after_its_ttl_and_at_once_when_forgotten() -> None:
    clock = [0.0]
    loads: list[int] = []
    current = activity()

    async def load(activity_id: int) -> Activity | None:
        loads.append(activity_id)
        return current

    cache = SaleCache(load, ttl=1.0, clock=lambda: clock[0])
    assert await cache.get(42) == current
    current = activity(title="Renamed")
    clock[0] = 0.9
    assert (await cache.get(42)).title == "Limited tea set"  # type: ignore[union-attr]
    clock[0] = 1.0
    assert (await cache.get(42)).title == "Renamed"  # type: ignore[union-attr]
    current = activity(title="Again")
    cache.forget(42)
    assert (await cache.get(42)).title == "Again"  # type: ignore[union-attr]
    assert loads == [42, 42, 42]
