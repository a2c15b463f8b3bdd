"""The identity service's OpenAPI document: the shopper login, refresh, logout and the
merchant login, with the bounds of domain.py's and merchants.py's parsing (docs/api.md).
Every route is public: a login has no token yet, and refresh and logout are authenticated
by the refresh token in the body."""

from __future__ import annotations

from services.common.auth import ROLES
from services.common.openapi.schemas import (
    Schema,
    array,
    boolean,
    const,
    enum,
    integer,
    obj,
    ref,
    string,
)
from services.common.openapi.spec import (
    DATABASE_UNAVAILABLE,
    REDIS_UNAVAILABLE,
    Access,
    Operation,
    ServiceSpec,
    json_answer,
    link,
    no_content,
)
from services.identity.domain import MAX_CODE_LENGTH, MAX_REFRESH_TOKEN_LENGTH, REFRESH_PREFIX
from services.identity.merchants import MAX_NAME_LENGTH, MAX_PASSWORD_LENGTH
from services.identity.routes import ADMIN_LOGIN_PATH, LOGIN, LOGOUT, REFRESH

_PAIR: dict[str, Schema] = {
    "access_token": string(description="a JWT for `Authorization: Bearer`"),
    "token_type": const("Bearer"),
    "expires_in": integer(1, description="seconds"),
    "refresh_token": string(pattern=f"^{REFRESH_PREFIX}"),
    "refresh_expires_in": integer(1, description="seconds"),
}
_REFRESH_BODY = obj(
    {
        "refresh_token": string(
            minLength=len(REFRESH_PREFIX),
            maxLength=MAX_REFRESH_TOKEN_LENGTH,
            pattern=f"^{REFRESH_PREFIX}[!-~]*$",
        )
    },
    closed=False,
)
# The refresh token of a login's answer is the one to present next.
_NEXT = {
    "refresh": link(
        "identity_refresh",
        "Renew the access token (the refresh token rotates).",
        request_body={"refresh_token": "$response.body#/refresh_token"},
    ),
    "logout": link(
        "identity_logout",
        "End the login.",
        request_body={"refresh_token": "$response.body#/refresh_token"},
    ),
}
_LOGIN_503 = (
    f"`provider_unavailable`: WeChat did not answer, nothing was created; "
    f"{DATABASE_UNAVAILABLE}; {REDIS_UNAVAILABLE}"
)

SCHEMAS: dict[str, Schema] = {
    "TokenPair": obj(_PAIR),
    "ShopperLogin": obj(
        {
            **_PAIR,
            "user": obj({"id": string(), "new": boolean(description="registered just now")}),
        }
    ),
    "MerchantLogin": obj(
        {
            **_PAIR,
            "merchant": obj({"id": integer(1), "name": string(), "roles": array(enum(ROLES))}),
        }
    ),
    "RefreshTokenBody": _REFRESH_BODY,
}

OPERATIONS = [
    Operation(
        "post",
        LOGIN,
        "identity_login",
        "A mini-program's wx.login() code for our tokens",
        Access.PUBLIC,
        {200: json_answer("The token pair and the user.", ref("ShopperLogin"), links=_NEXT)},
        {
            401: "`invalid_code`; `code_used`: call wx.login() again",
            403: "`user_blocked`: WeChat refuses this user",
            429: "`rate_limited`: too many logins from this address; "
            "`provider_rate_limited`: WeChat limits this user",
            502: "`provider_error`: WeChat refused the platform's request (its configuration)",
            503: _LOGIN_503,
        },
        body=obj(
            {
                "code": string(
                    minLength=1,
                    maxLength=MAX_CODE_LENGTH,
                    pattern="^[!-~]+$",
                    description="the wx.login() code",
                )
            },
            closed=False,
        ),
        unavailable="",
    ),
    Operation(
        "post",
        REFRESH,
        "identity_refresh",
        "Rotate a refresh token for a new token pair",
        Access.PUBLIC,
        {
            200: json_answer(
                "A new pair; the presented token is used up.", ref("TokenPair"), links=_NEXT
            )
        },
        {
            401: "`invalid_refresh_token`; `refresh_token_expired`; `refresh_token_revoked`; "
            "`refresh_token_reused`: presented twice, the whole login is revoked",
        },
        body=ref("RefreshTokenBody"),
    ),
    Operation(
        "post",
        LOGOUT,
        "identity_logout",
        "Revoke the login a refresh token belongs to",
        Access.PUBLIC,
        {204: no_content("Logged out (also when it already was).")},
        body=ref("RefreshTokenBody"),
    ),
    Operation(
        "post",
        ADMIN_LOGIN_PATH,
        "identity_admin_login",
        "A merchant's name and password for merchant tokens",
        Access.PUBLIC,
        {
            200: {
                **json_answer("The token pair and the account.", ref("MerchantLogin"), links=_NEXT),
                "headers": {
                    "Cache-Control": {
                        "description": "`no-store`",
                        "schema": const("no-store"),
                    }
                },
            }
        },
        {
            401: "`invalid_credentials`: unknown name, wrong password or disabled account alike",
            429: "`login_locked`: too many failures for this name or from this address",
            503: "`login_busy`: too many logins being checked at once",
        },
        body=obj(
            {
                "name": string(minLength=1, maxLength=MAX_NAME_LENGTH),
                "password": string(minLength=1, maxLength=MAX_PASSWORD_LENGTH),
            },
            closed=False,
        ),
    ),
]


SPEC = ServiceSpec(
    title="Identity (identity)",
    tag="identity",
    description="Shopper logins (mini-program code), merchant logins, refresh-token "
    "rotation and logout.",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    unavailable=DATABASE_UNAVAILABLE,
)
