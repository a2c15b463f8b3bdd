"""Merchant accounts without I/O: the admin login body, the rules for new accounts, the
roles and what each allows, and the lockout schedule after failed logins."""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.auth import ROLES
from services.common.errors import DomainError, ValidationError

# Bounds of what a login may carry: checked before any hashing, so a huge password costs
# nothing (argon2 would hash a megabyte as readily as a word).
MAX_NAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 256
MIN_PASSWORD_LENGTH = 12
# New names: letters, digits and . _ - @, starting with a letter or digit. A login may type
# anything printable (it is then an unknown name, answered like a wrong password).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


ACCOUNT_SCOPE = "account"
# A name's failed-login count is forgotten after a day without failures or waits.
NAME_FORGET_SECONDS = 24 * 3600.0
IP_SCOPE = "ip"


class AuditOutcome(enum.Enum):
    """The outcome column of identity.admin_login_audit."""

    OK = "ok"
    INVALID_CREDENTIALS = "invalid_credentials"
    LOCKED = "locked"
    # The right password of a disabled account: answered as invalid_credentials.
    DISABLED = "disabled"


class InvalidCredentials(DomainError):
    """One answer for an unknown name, a wrong password and a disabled account."""

    def __init__(self, outcome: AuditOutcome = AuditOutcome.INVALID_CREDENTIALS) -> None:
        super().__init__(401, "invalid_credentials", "name or password is wrong")
        # What the audit and the metrics record; never shown to the caller.
        self.outcome = outcome


class LoginLocked(DomainError):
    """Too many failures for this name or from this address: 429 with Retry-After. The
    same answer whether the name exists or not."""

    def __init__(self, seconds: float) -> None:
        retry = retry_after(seconds)
        super().__init__(
            429,
            "login_locked",
            f"too many failed logins for this name or from this address: retry in {retry} s",
            {"Retry-After": str(retry)},
        )
        self.retry_after = retry


class NameTaken(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(409, "name_taken", f"a merchant account named {name!r} exists")


class UnknownAccount(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(404, "not_found", f"no merchant account named {name!r}")


def retry_after(seconds: float) -> int:
    """Whole seconds for Retry-After, never 0 while something is still blocked."""
    return max(1, math.ceil(seconds))


def parse_admin_login(body: dict[str, Any]) -> tuple[str, str]:
    """(name, password) of {"name": ..., "password": ...}, both as typed."""
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not name:
        raise ValidationError("name", "must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError("name", f"must be at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValidationError("name", "must be printable characters")
    if not isinstance(password, str) or not password:
        raise ValidationError("password", "must be a non-empty string")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return name, password


def account_key(name: str) -> str:
    """The lockout key of a login name: "Ops" and "ops" are one account (as the unique
    index on lower(name)), known or not."""
    return name.lower()


def audit_name(name: str) -> str:
    return name[:MAX_NAME_LENGTH]


def check_new_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValidationError("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            "name", "may hold letters, digits and . _ - @, and starts with a letter or digit"
        )
    return name


def check_new_password(name: str, password: str) -> str:
    """The rules a new password must meet (on create and set-password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    if not password.isprintable():
        raise ValidationError("password", "must not hold control characters (tab, newline)")
    if password.lower() == name.lower():
        raise ValidationError("password", "must not be the account's name")
    if len(set(password)) == 1:
        raise ValidationError("password", "must not repeat one character")
    return password


def parse_roles(values: Iterable[str]) -> tuple[str, ...]:
    """Roles of a new account, each once, in the order of ROLES."""
    wanted = {v.strip().lower() for v in values if v.strip()}
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise ValidationError("roles", f"unknown role {unknown[0]!r}: use {', '.join(ROLES)}")
    if not wanted:
        raise ValidationError("roles", f"at least one of {', '.join(ROLES)}")
    return tuple(r for r in ROLES if r in wanted)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Failed logins before waiting, and the wait: after `max_failures` consecutive
    failures, base * 2**(failures - max_failures) seconds, at most `max_seconds`.

    A failure after `forget_after_seconds` of quiet (no failure, and no wait running)
    counts as the first again. Quiet is counted from the end of the last wait, not from
    the last failure: otherwise a wait as long as the window would end with a fresh
    count, and a guesser would get every try back each time."""

    max_failures: int
    base_seconds: float
    max_seconds: float
    forget_after_seconds: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the failures-th consecutive failure (0: none)."""
        if self.max_failures <= 0 or failures < self.max_failures:
            return 0.0
        # Bounded exponent: 2**1100 would overflow a float long after the cap is reached.
        doubled = self.base_seconds * 2.0 ** min(failures - self.max_failures, 64)
        return max(0.0, min(self.max_seconds, doubled))

    def schedule(self) -> tuple[float, ...]:
        """delay(1), delay(2), ... up to the first that reaches the cap; every later
        failure waits as long as the last entry. PostgreSQL takes this as an array, so one
        statement counts a failure and sets its wait with the rule written only here."""
        if self.delay(self.max_failures) <= 0:
            return (0.0,)  # no lockout (max_failures 0, or no wait configured)
        delays = [self.delay(n) for n in range(1, self.max_failures + 1)]
        while delays[-1] < self.max_seconds and len(delays) < self.max_failures + 64:
            delays.append(self.delay(len(delays) + 1))
        return tuple(delays)

    def counted(self, previous_failures: int, quiet_seconds: float) -> int:
        """The failure count after one more failure, `quiet_seconds` after the later of
        the previous failure and the end of its wait (RECORD_FAILURE in
        merchant_repository.py does the same in SQL, under the row's lock)."""
        if previous_failures <= 0 or quiet_seconds > self.forget_after_seconds:
            return 1
        return previous_failures + 1


def lockout_policies(
    max_failures: int,
    ip_max_failures: int,
    base_seconds: float,
    max_seconds: float,
) -> tuple[LockoutPolicy, LockoutPolicy]:
    """(per account name, per client address). A success resets the name's count, never
    the address's: one valid account must not let an address spray the others. The
    address's count is forgotten after max_seconds of quiet, so an office behind one
    address is not held back by last week's typos; a name's after a day of quiet (known
    and unknown names alike, so that forgetting tells nothing about which exist)."""
    account = LockoutPolicy(max_failures, base_seconds, max_seconds, NAME_FORGET_SECONDS)
    address = LockoutPolicy(ip_max_failures, base_seconds, max_seconds, max_seconds)
    return account, address


def address_key(client_ip: str) -> str:
    """The lockout key of a client address: the address itself, or for IPv6 its /64 (one
    subscriber's network: a guesser there has 2**64 addresses to rotate through)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
