"""Notify's console rules without PostgreSQL: template ids and delivery counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import DomainError, ValidationError
from services.notify.domain import (
    DELIVERY_STATES,
    TEMPLATES,
    StoredTemplate,
    deliveries_view,
    effective_template_ids,
    parse_provider_template_id,
    template_kind,
    templates_view,
)

SET = StoredTemplate("order_paid", "Merchant_1", datetime(2030, 1, 1, tzinfo=UTC), "merchant:1")


def test_a_stored_id_wins_over_the_setting() -> None:
    defaults = {"order_paid": "FromSetting", "payment_due": "Due"}
    assert effective_template_ids(defaults, [SET]) == {
        "order_paid": "Merchant_1",
        "payment_due": "Due",
    }


def test_the_view_lists_every_kind_with_where_its_id_comes_from() -> None:
    view = templates_view({"payment_due": "Due"}, [SET])["templates"]
    assert [e["kind"] for e in view] == list(TEMPLATES)
    by_kind = {e["kind"]: e for e in view}
    assert by_kind["order_paid"] == {
        "kind": "order_paid",
        "provider_template_id": "Merchant_1",
        "source": "set",
        "updated_at": "2030-01-01T00:00:00.000Z",
        "updated_by": "merchant:1",
    }
    assert (by_kind["payment_due"]["provider_template_id"], by_kind["payment_due"]["source"]) == (
        "Due",
        "default",
    )
    assert by_kind["group_failed"]["provider_template_id"] == "group_failed"


@pytest.mark.parametrize("value", ["a", "A-z_09", "x" * 128])
def test_template_ids_of_letters_digits_dash_and_underscore_are_accepted(value: str) -> None:
    assert parse_provider_template_id({"provider_template_id": value}) == value


@pytest.mark.parametrize("value", ["", "x" * 129, "a b", "a.b", "ü", "a\n", None, 1])
def test_other_template_ids_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_provider_template_id({"provider_template_id": value})
    assert caught.value.field == "provider_template_id"


def test_an_unknown_kind_is_404() -> None:
    assert template_kind("order_paid") == "order_paid"
    with pytest.raises(DomainError) as caught:
        template_kind("order_shipped")
    assert (caught.value.status, caught.value.code) == (404, "not_found")


def test_delivery_counts_show_every_state_and_kind_with_zeros() -> None:
    view = deliveries_view(
        [("order_paid", "sent", 3), ("order_paid", "dead", 1), ("payment_due", "sent", 2)]
    )
    zero = dict.fromkeys(DELIVERY_STATES, 0)
    assert view["counts"] == {**zero, "sent": 5, "dead": 1}
    assert view["by_kind"]["order_paid"] == {**zero, "sent": 3, "dead": 1}
    assert view["by_kind"]["payment_due"] == {**zero, "sent": 2}
    assert view["by_kind"]["sale_starting"] == zero
    assert set(view["by_kind"]) == set(TEMPLATES)
