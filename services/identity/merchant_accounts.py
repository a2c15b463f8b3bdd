"""Merchant accounts: the admin login (POST /api/auth/admin/login) and the account
commands of `python -m services.identity.admin`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

import asyncpg
from prometheus_client import Counter, Histogram

from services.common.settings import Settings
from services.identity.domain import MERCHANT, merchant_subject, trusted_networks
from services.identity.merchant_repository import Attempt, Merchant, MerchantRepository
from services.identity.merchants import (
    ACCOUNT_SCOPE,
    IP_SCOPE,
    AuditOutcome,
    InvalidCredentials,
    LockoutPolicy,
    LoginLocked,
    UnknownAccount,
    account_key,
    address_key,
    check_new_name,
    check_new_password,
    lockout_policies,
    parse_roles,
)
from services.identity.passwords import Passwords
from services.identity.tokens import TokenIssuer

log = logging.getLogger(__name__)

# The `kind` label of merchant logins in identity_logins_total / identity_login_seconds.
ADMIN_KIND = "admin"


class LoginMetrics(Protocol):
    """What the admin login records (services.identity.metrics.IdentityMetrics has it):
    identity_logins_total{kind, outcome} and identity_login_seconds{kind}."""

    @property
    def logins(self) -> Counter: ...

    @property
    def login_seconds(self) -> Histogram: ...


def settings_policies(settings: Settings) -> tuple[LockoutPolicy, LockoutPolicy]:
    return lockout_policies(
        settings.admin_login_max_failures,
        settings.admin_login_ip_max_failures,
        settings.admin_lockout_base_seconds,
        settings.admin_lockout_max_seconds,
    )


class AdminLogin:
    """Checks a merchant's name and password and issues the admin token pair."""

    def __init__(
        self,
        repo: MerchantRepository,
        passwords: Passwords,
        issuer: TokenIssuer,
        settings: Settings,
        metrics: LoginMetrics,
    ) -> None:
        self.repo = repo
        self.passwords = passwords
        self.issuer = issuer
        self.metrics = metrics
        self.trusted = trusted_networks(settings.trusted_proxy_cidrs)
        self.account_policy, self.address_policy = settings_policies(settings)

    @classmethod
    def build(
        cls, pool: asyncpg.Pool, issuer: TokenIssuer, settings: Settings, metrics: LoginMetrics
    ) -> AdminLogin:
        passwords = Passwords(settings.admin_password_hash_concurrency)
        return cls(MerchantRepository(pool), passwords, issuer, settings, metrics)

    async def login(self, name: str, password: str, client_ip: str) -> dict[str, Any]:
        """The token answer, or LoginLocked (429), InvalidCredentials (401) or
        PasswordsBusy (503). Every attempt that reaches the database is audited."""
        merchant = await self.repo.find(name)
        attempt = Attempt(name, merchant.id if merchant else None, client_ip)
        blocked = await self.repo.blocked_seconds(attempt)
        if blocked > 0:
            # Refused before the password is looked at: while locked, guessing costs the
            # guesser nothing and tells nothing, and costs us no hashing.
            await self.repo.audit(attempt, AuditOutcome.LOCKED)
            raise LoginLocked(blocked)
        # An unknown name is checked against a dummy hash: it takes as long as a wrong
        # password, so the time of the answer does not tell which names exist.
        verified = await self.passwords.verify(
            merchant.password_hash if merchant else None, password
        )
        outcome = AuditOutcome.INVALID_CREDENTIALS
        if merchant is not None and verified.ok and merchant.disabled:
            outcome = AuditOutcome.DISABLED
        elif merchant is not None and verified.ok:
            refresh = self.issuer.new_refresh(MERCHANT)
            done = await self.repo.record_success(
                merchant, attempt, verified.rehashed, refresh.hash, refresh.ttl_seconds
            )
            if done.blocked_seconds > 0:
                raise LoginLocked(done.blocked_seconds)
            if done.roles is not None:
                if verified.rehashed is not None:
                    log.info(
                        "merchant %d: password rehashed with %s",
                        merchant.id,
                        self.passwords.parameters,
                    )
                subject = merchant_subject(merchant.id)
                pair = self.issuer.pair(MERCHANT, subject, done.roles, refresh.token)
                view = {"id": merchant.id, "name": merchant.name, "roles": list(done.roles)}
                return pair.view(merchant=view)
            # Disabled or given a new password while this one was being checked.
        failure = await self.repo.record_failure(
            attempt, outcome, self.account_policy, self.address_policy
        )
        if not failure.counted:
            raise LoginLocked(failure.wait_seconds)
        if failure.wait_seconds > 0:
            log.warning(
                "admin login locked for %.0f s after repeated failures (merchant %s, address %s)",
                failure.wait_seconds,
                merchant.id if merchant else "unknown",
                client_ip,
            )
        raise InvalidCredentials(outcome)

    async def purge_stale_failures(self) -> int:
        """Forget failure counters past their quiet period (run now and then, e.g. with
        the refresh-token purge): without it, made-up names would pile up rows."""
        return await self.repo.purge_stale_failures(self.account_policy, self.address_policy)


class MerchantAccounts:
    """The account commands (create, set-password, disable, enable, unlock, list)."""

    def __init__(self, repo: MerchantRepository, passwords: Passwords) -> None:
        self.repo = repo
        self.passwords = passwords

    async def create(self, name: str, password: str, roles: Iterable[str]) -> Merchant:
        check_new_name(name)
        wanted = parse_roles(roles)
        check_new_password(name, password)
        return await self.repo.create(name, await self.passwords.hash(password), wanted)

    async def set_password(self, name: str, password: str) -> int:
        """The new password; every live login of the account is revoked."""
        merchant = await self.existing(name)
        check_new_password(merchant.name, password)
        changed = await self.repo.set_password(name, await self.passwords.hash(password))
        if changed is None:
            raise UnknownAccount(name)
        return changed

    async def disable(self, name: str) -> int:
        """No more logins; every live login is revoked (refreshes fail at once, access
        tokens already issued expire within admin_access_token_ttl_seconds)."""
        return await self._set_disabled(name, True)

    async def enable(self, name: str) -> int:
        return await self._set_disabled(name, False)

    async def unlock(self, name: str) -> bool:
        """Clear the name's failed-login count and lock; False if there was none."""
        merchant = await self.existing(name)
        return await self.repo.clear_failures(ACCOUNT_SCOPE, account_key(merchant.name))

    async def unlock_address(self, client_ip: str) -> bool:
        return await self.repo.clear_failures(IP_SCOPE, address_key(client_ip))

    async def list(self) -> list[Merchant]:
        return await self.repo.list()

    async def existing(self, name: str) -> Merchant:
        merchant = await self.repo.find(name)
        if merchant is None:
            raise UnknownAccount(name)
        return merchant

    async def _set_disabled(self, name: str, disabled: bool) -> int:
        changed = await self.repo.set_disabled(name, disabled)
        if changed is None:
            raise UnknownAccount(name)
        return changed
