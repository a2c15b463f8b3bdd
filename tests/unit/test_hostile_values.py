"""The validation layer against generated hostile values: every parser either returns a
value PostgreSQL and Redis can take (within its column's range, text without NUL or lone
surrogates) or refuses with its 4xx error, never another exception."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.auth import AuthError, principal_from_header
from services.common.errors import DomainError, ValidationError
from services.common.idempotency import parse_idempotency_key
from services.common.paging import list_limit, parse_page, text_param
from services.common.validation import (
    MAX_BIGINT,
    MAX_INTEGER,
    digits,
    int_field,
    parse_id,
    storable,
    text_field,
    time_field,
)
from services.identity.domain import client_ip, trusted_networks
from services.order.payments import verify_signature

SECRET = "unit-test-secret-0123456789abcdef0123456789"
# Text of any code point, lone surrogates and NUL included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=50)
hostile_text = st.one_of(
    any_text,
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udcff", "9" * 5000, "-1", "1e400", "１２"]),
)
hostile_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**64), max_value=-(2**63) + 2),
    st.just(10**4000),
)
hostile_values = st.one_of(
    hostile_ints, hostile_text, st.floats(), st.booleans(), st.none(), st.lists(st.integers())
)


@given(hostile_text, st.integers(min_value=0, max_value=10), st.integers(min_value=0))
def test_a_decimal_string_is_read_within_its_bounds_or_not_at_all(
    raw: str, low: int, high: int
) -> None:
    value = digits(raw, low, high)
    assert value is None or (low <= value <= high and raw.isascii() and raw.isdigit())


@given(hostile_text)
def test_a_path_id_is_a_positive_bigint_or_none(raw: str) -> None:
    value = parse_id(raw)
    assert value is None or 0 < value <= MAX_BIGINT


@given(hostile_values)
def test_an_int_field_is_within_its_bounds_or_refused(value: Any) -> None:
    try:
        got = int_field({"n": value}, "n", 1, MAX_INTEGER)
    except ValidationError as exc:
        assert exc.status == 400 and exc.field == "n"
    else:
        assert type(got) is int and 1 <= got <= MAX_INTEGER


@given(hostile_values)
def test_a_text_field_is_storable_or_refused(value: Any) -> None:
    try:
        got = text_field({"t": value}, "t", 200)
    except ValidationError as exc:
        assert exc.status == 400
    else:
        assert storable(got) and "\x00" not in got and got.encode()


@given(st.one_of(hostile_values, st.datetimes(timezones=st.timezones()).map(str)))
def test_a_time_field_is_an_aware_utc_moment_or_refused(value: Any) -> None:
    try:
        got = time_field({"at": value}, "at")
    except ValidationError as exc:
        assert exc.status == 400
    else:
        assert got.tzinfo is UTC and datetime.min.replace(tzinfo=UTC) <= got


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_a_zone_pushes_out_of_the_calendar_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        time_field({"at": value}, "at")
    assert caught.value.message == "at: must lie within the years 1 to 9999 in UTC"


@given(st.dictionaries(st.sampled_from(["limit", "offset", "x"]), hostile_text))
def test_paging_is_within_its_bounds_or_refused(query: dict[str, str]) -> None:
    try:
        page = parse_page(query)
        limit = list_limit(query.get("limit"), 20, 100)
        text = text_param(query, "x", 128)
    except ValidationError as exc:
        assert exc.status == 400
    else:
        assert 1 <= page.limit <= 100 and 0 <= page.offset <= 100_000 and 1 <= limit <= 100
        assert text is None or storable(text)


@given(any_text, st.binary(max_size=64))
def test_a_payment_signature_header_is_valid_or_refused_with_401(header: str, body: bytes) -> None:
    with pytest.raises(DomainError) as caught:
        verify_signature(SECRET, header, body, datetime.now(UTC), 300)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "header",
    ["t=1,v1=é", "t=1,v1=\udcff", "t=" + "9" * 5000 + ",v1=00", "t=-1,v1=00", "t=１,v1=00"],
)
def test_a_signature_header_of_hostile_values_is_refused_with_401(header: str) -> None:
    with pytest.raises(DomainError) as caught:
        verify_signature(SECRET, header, b"{}", datetime.now(UTC), 300)
    assert (caught.value.status, caught.value.code) == (401, "invalid_signature")


@settings(max_examples=300)
@given(st.one_of(any_text, any_text.map(lambda t: "Bearer " + t)))
def test_an_authorization_header_names_a_printable_user_or_is_refused(header: str) -> None:
    try:
        who = principal_from_header(header, SECRET)
    except AuthError:
        return
    assert who.user_id.isprintable()  # pragma: no cover (a forged signature never passes)


@given(hostile_text)
def test_a_client_address_header_gives_an_address_postgresql_can_store(real_ip: str) -> None:
    address = client_ip("127.0.0.1", real_ip, trusted_networks("127.0.0.0/8"))
    assert storable(address)
    ipaddress.ip_address(address)


@given(hostile_text)
def test_an_idempotency_key_is_visible_ascii_or_refused(key: str) -> None:
    try:
        got = parse_idempotency_key([key])
    except DomainError as exc:
        assert exc.status == 400
    else:
        assert got is not None and got.isascii() and got.isprintable() and " " not in got


def test_every_integer_a_sale_stores_fits_its_column() -> None:
    from services.groupbuy import domain as groupbuy
    from services.seckill import domain as seckill

    # integer columns: stock, limits, seconds, group size
    for module in (seckill, groupbuy):
        for name in ("MAX_STOCK", "MAX_PER_USER_LIMIT", "MAX_PAYMENT_TIMEOUT_SECONDS"):
            assert getattr(module, name) <= MAX_INTEGER, (module.__name__, name)
    assert groupbuy.MAX_GROUP_SIZE <= MAX_INTEGER and groupbuy.MAX_WINDOW_SECONDS <= MAX_INTEGER
    # bigint columns: prices, and an order's amount (price times quantity)
    for module in (seckill, groupbuy):
        assert module.MAX_PRICE_CENTS * module.MAX_PER_USER_LIMIT <= MAX_BIGINT
