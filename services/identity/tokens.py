"""Issuing a login's tokens: a short-lived access JWT (signed with the current key) and an
opaque refresh token, of which only a hash is stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.auth import KeySet, mint_token
from services.common.settings import Settings
from services.identity.domain import MERCHANT, SHOPPER, new_refresh_token, refresh_token_hash


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    token: str
    hash: bytes
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int

    def view(self, **extra: Any) -> dict[str, Any]:
        """The login/refresh answer (OAuth 2.0 token response field names)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            **extra,
        }


class TokenIssuer:
    def __init__(self, keys: KeySet, settings: Settings) -> None:
        self._keys = keys
        self.access_ttl = {
            SHOPPER: settings.access_token_ttl_seconds,
            MERCHANT: settings.admin_access_token_ttl_seconds,
        }
        self.refresh_ttl = {
            SHOPPER: settings.refresh_token_ttl_seconds,
            MERCHANT: settings.admin_refresh_token_ttl_seconds,
        }

    def new_refresh(self, kind: str) -> NewRefreshToken:
        token = new_refresh_token()
        return NewRefreshToken(token, refresh_token_hash(token), self.refresh_ttl[kind])

    def pair(self, kind: str, subject: str, roles: Sequence[str], refresh_token: str) -> TokenPair:
        """A new access token beside the refresh token just stored for a login of `kind`."""
        ttl = self.access_ttl[kind]
        access = mint_token(self._keys, subject, roles, ttl_seconds=ttl)
        return TokenPair(access, ttl, refresh_token, self.refresh_ttl[kind])
