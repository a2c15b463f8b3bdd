"""Settings read once from an environment mapping into a frozen dataclass."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.settings import DEV_JWT_SECRET, Settings


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.seckill_port == 8081
    assert settings.sold_out_recheck_seconds == 0.5
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.kafka_topic_prefix == ""


def test_upper_cased_field_names_set_strings_ints_and_floats() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://cache:6379/3",
            "KAFKA_TOPIC_PREFIX": "staging.",
            "ORDER_PORT": "18082",
            "CONSUMER_MAX_ATTEMPTS": "9",
            "SOLD_OUT_RECHECK_SECONDS": "0.25",
            "REDIS_TIMEOUT_SECONDS": "3",
            "INSTANCE_ID": "seckill-0",
        }
    )
    assert settings.redis_url == "redis://cache:6379/3"
    assert settings.kafka_topic_prefix == "staging."
    assert settings.order_port == 18082
    assert settings.consumer_max_attempts == 9
    assert settings.sold_out_recheck_seconds == 0.25
    assert settings.redis_timeout_seconds == 3.0
    assert settings.instance_id == "seckill-0"
    assert type(settings.order_port) is int
    assert type(settings.redis_timeout_seconds) is float


def test_environment_variables_that_name_no_setting_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/usr/bin", "HOME": "/root", "SECKILL": "1"}) == Settings()


def test_lower_case_names_are_not_settings() -> None:
    assert Settings.from_env({"order_port": "1"}).order_port == 8082


def test_an_empty_value_means_the_default() -> None:
    settings = Settings.from_env(
        {"ORDER_PORT": "", "JWT_SECRET": "", "SOLD_OUT_RECHECK_SECONDS": ""}
    )
    assert settings.order_port == 8082
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.sold_out_recheck_seconds == 0.5


@pytest.mark.parametrize("value", ["abc", "1.5", "8o82", "0x1F"])
def test_an_integer_setting_that_does_not_parse_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"ORDER_PORT": value})
    assert str(caught.value) == f"ORDER_PORT={value!r} is not a valid int"


def test_a_float_setting_that_does_not_parse_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"SOLD_OUT_RECHECK_SECONDS": "half a second"})
    assert str(caught.value) == "SOLD_OUT_RECHECK_SECONDS='half a second' is not a valid float"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("0", False), ("No", False), ("off", False), ("true", True), ("1", True)],
)
def test_a_boolean_setting_takes_words_not_python_truthiness(value: str, expected: bool) -> None:
    assert Settings.from_env({"SECKILL_EMBEDDED_WORKER": value}).seckill_embedded_worker is expected


def test_a_boolean_setting_that_does_not_parse_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"SECKILL_EMBEDDED_WORKER": "nope"})
    assert str(caught.value) == "SECKILL_EMBEDDED_WORKER='nope' is not a valid bool"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().order_port = 1  # type: ignore[misc]


def test_a_topic_name_carries_the_prefix() -> None:
    assert Settings(kafka_topic_prefix="t1a2b.").topic("orders") == "t1a2b.orders"
    assert Settings(kafka_topic_prefix="t1a2b.").topic("orders.dlq") == "t1a2b.orders.dlq"


def test_without_a_prefix_a_topic_keeps_its_name() -> None:
    assert Settings().topic("seckill.reservations") == "seckill.reservations"
