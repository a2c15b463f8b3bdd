"""Merchant account rules without I/O: the login body, new names, passwords and roles,
and the lockout schedule."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.auth import grants
from services.common.errors import ValidationError
from services.identity.merchants import (
    MAX_PASSWORD_LENGTH,
    InvalidCredentials,
    LockoutPolicy,
    LoginLocked,
    account_key,
    address_key,
    check_new_name,
    check_new_password,
    lockout_policies,
    parse_admin_login,
    parse_roles,
    retry_after,
)


def refused_field(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_admin_login(body)
    return caught.value.field


def test_a_login_body_gives_the_name_and_password_as_typed() -> None:
    assert parse_admin_login({"name": "Alice", "password": " pass word "}) == (
        "Alice",
        " pass word ",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "x"}, "name"),
        ({"name": "", "password": "x"}, "name"),
        ({"name": 7, "password": "x"}, "name"),
        ({"name": "a" * 65, "password": "x"}, "name"),
        ({"name": "a\nb", "password": "x"}, "name"),
        ({"name": "alice"}, "password"),
        ({"name": "alice", "password": ""}, "password"),
        ({"name": "alice", "password": ["x"]}, "password"),
        ({"name": "alice", "password": "x" * (MAX_PASSWORD_LENGTH + 1)}, "password"),
    ],
)
def test_a_login_body_without_a_usable_name_or_password_is_refused_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    assert refused_field(body) == field


def test_a_password_of_a_megabyte_is_refused_before_any_hashing() -> None:
    assert refused_field({"name": "alice", "password": "p" * 1_000_000}) == "password"


def test_names_differing_only_in_case_share_one_lockout_key() -> None:
    assert account_key("Alice") == account_key("ALICE") == "alice"


@pytest.mark.parametrize("name", ["alice", "ops.team-1", "a_b@shop", "7eleven", "A" * 64])
def test_new_names_of_letters_digits_and_a_few_signs_are_accepted(name: str) -> None:
    assert check_new_name(name) == name


@pytest.mark.parametrize("name", ["", "-alice", ".x", "has space", "ünï", "a/b", "a" * 65])
def test_other_new_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        check_new_name(name)


def test_a_new_password_needs_twelve_characters() -> None:
    assert check_new_password("alice", "twelve chars") == "twelve chars"
    with pytest.raises(ValidationError, match="at least 12"):
        check_new_password("alice", "eleven char")


@pytest.mark.parametrize(
    "password",
    ["AliceAliceAl" * 22, "alicealice12\n", "tab\tinside the password", "zzzzzzzzzzzzzzzz"],
)
def test_overlong_control_character_and_one_letter_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationError):
        check_new_password("alice", password)


def test_the_account_name_is_not_a_password() -> None:
    with pytest.raises(ValidationError, match="name"):
        check_new_password("operator.west", "OPERATOR.WEST")


def test_roles_are_deduplicated_into_a_fixed_order() -> None:
    assert parse_roles(["viewer", "ADMIN", "viewer", " operator "]) == (
        "admin",
        "operator",
        "viewer",
    )


@pytest.mark.parametrize("roles", [[], [" "], ["root"], ["admin", "superuser"]])
def test_no_role_or_an_unknown_role_is_refused(roles: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_roles(roles)
    assert caught.value.field == "roles"


def test_admin_implies_every_role_and_operator_implies_viewer() -> None:
    assert grants(["admin"], "operator") and grants(["admin"], "viewer")
    assert grants(["operator"], "viewer") and not grants(["operator"], "admin")
    assert not grants(["viewer"], "operator") and not grants([], "viewer")
    assert not grants(["shopper"], "viewer")


POLICY = LockoutPolicy(
    max_failures=5, base_seconds=30.0, max_seconds=3600.0, forget_after_seconds=3600.0
)


def test_no_wait_before_the_fifth_failure_then_thirty_seconds_doubling() -> None:
    assert [POLICY.delay(n) for n in range(1, 10)] == [0, 0, 0, 0, 30, 60, 120, 240, 480]


def test_the_wait_stops_growing_at_the_maximum() -> None:
    assert POLICY.delay(12) == 3600.0
    assert POLICY.delay(10_000) == 3600.0


def test_the_schedule_lists_every_wait_up_to_the_first_that_reaches_the_maximum() -> None:
    assert POLICY.schedule() == (0, 0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600)
    schedule = POLICY.schedule()
    for failures in range(1, 40):
        assert schedule[min(failures, len(schedule)) - 1] == POLICY.delay(failures)


def test_a_zero_threshold_or_zero_wait_means_no_lockout() -> None:
    assert LockoutPolicy(0, 30.0, 3600.0, 3600.0).schedule() == (0.0,)
    assert LockoutPolicy(5, 0.0, 3600.0, 3600.0).schedule() == (0.0,)
    assert LockoutPolicy(0, 30.0, 3600.0, 3600.0).delay(100) == 0.0


def test_a_base_above_the_maximum_waits_the_maximum() -> None:
    assert LockoutPolicy(2, 500.0, 60.0, 60.0).schedule() == (0.0, 60.0)


def test_an_address_count_restarts_after_an_hour_of_quiet_and_a_name_count_after_a_day() -> None:
    account, address = lockout_policies(5, 20, 30.0, 3600.0)
    assert (account.max_failures, address.max_failures) == (5, 20)
    assert address.counted(7, quiet_seconds=3599) == 8
    assert address.counted(7, quiet_seconds=3601) == 1
    assert account.counted(7, quiet_seconds=3601) == 8
    assert account.counted(7, quiet_seconds=24 * 3600 + 1) == 1
    assert account.counted(0, quiet_seconds=0) == 1


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64_network(address: str, key: str) -> None:
    assert address_key(address) == key


def test_retry_after_is_whole_seconds_rounded_up_and_never_zero() -> None:
    assert [retry_after(s) for s in (0.001, 1.0, 29.2, 30.0)] == [1, 1, 30, 30]


def test_the_refusals_carry_their_status_code_and_retry_after() -> None:
    locked = LoginLocked(29.2)
    assert (locked.status, locked.code, locked.headers) == (
        429,
        "login_locked",
        {"Retry-After": "30"},
    )
    wrong = InvalidCredentials()
    assert (wrong.status, wrong.code, wrong.message) == (
        401,
        "invalid_credentials",
        "name or password is wrong",
    )
