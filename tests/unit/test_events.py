"""The event envelope shared by every topic: encoding, strict decoding, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.events import (
    ENVELOPE_VERSION,
    Envelope,
    MalformedEvent,
    event_id_for,
    from_epoch_ms,
    rfc3339,
    rfc3339_ms,
)

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def envelope() -> Envelope:
    return Envelope(
        id="6b1f0c0e-5d4c-5c1e-9f0a-1d2e3f4a5b6c",
        type="seckill.reserved",
        key="u-1",
        data={"reservation_id": "42-abc", "quantity": 2, "nested": {"list": [1, "two", None]}},
        at="2030-03-17T17:46:40.123Z",
    )


def raw(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "e-1",
        "type": "order.created",
        "v": 1,
        "at": "2030-03-17T17:46:40.123Z",
        "key": "k-1",
        "data": {"order_id": "o-1"},
    }
    body.update(overrides)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


# --- encode / decode ------------------------------------------------------------------


def test_an_envelope_survives_encode_and_decode_unchanged() -> None:
    original = envelope()
    assert Envelope.decode(original.encode()) == original


def test_an_envelope_encodes_to_the_documented_six_keys() -> None:
    assert orjson.loads(envelope().encode()) == {
        "id": "6b1f0c0e-5d4c-5c1e-9f0a-1d2e3f4a5b6c",
        "type": "seckill.reserved",
        "v": 1,
        "at": "2030-03-17T17:46:40.123Z",
        "key": "u-1",
        "data": {"reservation_id": "42-abc", "quantity": 2, "nested": {"list": [1, "two", None]}},
    }


def test_a_new_envelope_is_stamped_now_in_utc_at_version_one() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    env = Envelope(id="e", type="t", key="k", data={})
    after = datetime.now(UTC)
    assert env.v == ENVELOPE_VERSION == 1
    assert RFC3339_MS_UTC.match(env.at)
    assert before <= datetime.fromisoformat(env.at) <= after


def test_unknown_envelope_keys_are_ignored_on_decode() -> None:
    env = Envelope.decode(raw(trace="abc"))
    assert (env.id, env.type, env.key, env.data) == (
        "e-1",
        "order.created",
        "k-1",
        {"order_id": "o-1"},
    )


def test_an_envelope_decodes_from_text_as_well_as_bytes() -> None:
    assert Envelope.decode(raw().decode()) == Envelope.decode(raw())  # type: ignore[arg-type]


def test_an_empty_message_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match=r"^empty message$"):
        Envelope.decode(None)


@pytest.mark.parametrize("payload", [b"", b"not json", b"{", b"\xff\xfe", b'{"id": "e-1",}'])
def test_a_message_that_is_not_json_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedEvent, match=r"^not JSON: "):
        Envelope.decode(payload)


@pytest.mark.parametrize("payload", [b"[]", b'[{"id": "e-1"}]', b'"envelope"', b"42", b"null"])
def test_json_that_is_not_an_object_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedEvent, match=r"^envelope is not an object$"):
        Envelope.decode(payload)


@pytest.mark.parametrize("missing", ["id", "type", "v", "at", "key", "data"])
def test_an_envelope_missing_a_key_is_malformed_naming_it(missing: str) -> None:
    with pytest.raises(MalformedEvent, match=f"^envelope misses '{missing}'$"):
        Envelope.decode(raw(**{missing: ...}))


@pytest.mark.parametrize("name", ["id", "type", "key", "at"])
@pytest.mark.parametrize("value", [None, 1, ["x"], {"x": 1}])
def test_an_envelope_with_a_non_string_header_is_malformed(name: str, value: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"^id, type, key and at must be strings$"):
        Envelope.decode(raw(**{name: value}))


@pytest.mark.parametrize("data", [None, [], "x", 1])
def test_an_envelope_whose_data_is_not_an_object_is_malformed(data: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"^data must be an object$"):
        Envelope.decode(raw(data=data))


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_an_envelope_of_another_version_is_malformed(version: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"^unsupported envelope version "):
        Envelope.decode(raw(v=version))


@pytest.mark.parametrize("version", [True, 1.0])
def test_an_envelope_whose_version_is_a_bool_or_float_is_malformed(version: Any) -> None:
    with pytest.raises(MalformedEvent):
        Envelope.decode(raw(v=version))


def test_a_malformed_event_is_a_value_error() -> None:
    assert issubclass(MalformedEvent, ValueError)


# --- ids and timestamps ---------------------------------------------------------------


def test_an_event_id_is_a_deterministic_uuid_of_type_and_natural_key() -> None:
    assert event_id_for("order.paid", "o-1") == event_id_for("order.paid", "o-1")
    assert event_id_for("order.paid", "o-1") != event_id_for("order.cancelled", "o-1")
    assert event_id_for("order.paid", "o-1") != event_id_for("order.paid", "o-2")
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        event_id_for("order.paid", "o-1"),
    )


def test_rfc3339_renders_utc_with_milliseconds_and_a_z() -> None:
    moment = datetime(2030, 3, 17, 17, 46, 40, 123_456, tzinfo=UTC)
    assert rfc3339(moment) == "2030-03-17T17:46:40.123Z"


def test_rfc3339_shows_zero_milliseconds_explicitly() -> None:
    assert rfc3339(datetime(2030, 1, 1, tzinfo=UTC)) == "2030-01-01T00:00:00.000Z"


def test_rfc3339_converts_other_offsets_to_utc() -> None:
    moment = datetime(2030, 3, 18, 1, 46, 40, 999_999, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339(moment) == "2030-03-17T17:46:40.999Z"


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.timezones(),
    )
)
def test_rfc3339_agrees_with_isoformat_truncated_to_milliseconds(moment: datetime) -> None:
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    assert rfc3339(moment) == expected.replace("+00:00", "Z")


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_rfc3339_of_epoch_milliseconds_is_that_of_the_datetime(ms: int) -> None:
    assert rfc3339_ms(ms) == rfc3339(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))


def test_epoch_milliseconds_become_an_aware_utc_datetime() -> None:
    moment = from_epoch_ms(1_900_000_000_123)
    assert moment == datetime(2030, 3, 17, 17, 46, 40, 123_000, tzinfo=UTC)
    assert rfc3339(moment) == "2030-03-17T17:46:40.123Z"
    assert rfc3339(from_epoch_ms(0)) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(55, 7, 19, 16, 14, 1, tzinfo=UTC), "0055-07-19T16:14:01.000Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (datetime(2030, 6, 1, 12, 0, 0, 521000, tzinfo=UTC), "2030-06-01T12:00:00.521Z"),
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "9999-12-31T23:59:59.000Z"),
    ],
)
def test_times_are_written_as_rfc_3339_with_four_digit_years(moment: datetime, text: str) -> None:
    from services.common.events import rfc3339

    assert rfc3339(moment) == text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
