-- Shoppers (one per mini-program appid + openid), merchant accounts, refresh tokens in
-- rotation families, login throttles, the admin login audit, and the outbox of the users
-- topic.
CREATE SCHEMA IF NOT EXISTS identity;

CREATE TABLE identity.users (
    id            text        PRIMARY KEY,
    appid         text        NOT NULL,
    openid        text        NOT NULL,
    unionid       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (appid, openid)
);
CREATE INDEX users_by_unionid ON identity.users (unionid) WHERE unionid IS NOT NULL;

CREATE TABLE identity.merchants (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text        NOT NULL,
    password_hash       text        NOT NULL,
    roles               text[]      NOT NULL,
    disabled_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz
);
-- Login names are unique whatever their case: "Ops" and "ops" are one account.
CREATE UNIQUE INDEX merchants_by_name ON identity.merchants (lower(name));

-- A family is one login's chain of refresh tokens. Each refresh uses its token up (used_at)
-- and issues the next in the same family; presenting a used token again revokes the
-- family, the one after it included (someone else holds a copy).
CREATE TABLE identity.token_families (
    id            uuid        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('shopper', 'merchant')),
    subject       text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX token_families_live ON identity.token_families (kind, subject)
    WHERE revoked_at IS NULL;

-- Only a SHA-256 of each token is kept: a copy of the table logs nobody in.
CREATE TABLE identity.refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    family_id  uuid        NOT NULL REFERENCES identity.token_families (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_by_family ON identity.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_expiry ON identity.refresh_tokens (expires_at);

-- Failed merchant logins per account name (known or not: an unknown name is throttled the
-- same way, so the answer tells nothing) and per client address.
CREATE TABLE identity.login_failures (
    scope           text        NOT NULL CHECK (scope IN ('account', 'ip')),
    key             text        NOT NULL,
    failures        integer     NOT NULL,
    last_failure_at timestamptz NOT NULL,
    blocked_until   timestamptz,
    PRIMARY KEY (scope, key)
);

CREATE TABLE identity.admin_login_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    name        text        NOT NULL,
    merchant_id bigint      REFERENCES identity.merchants (id),
    client_ip   text        NOT NULL,
    outcome     text        NOT NULL
);
CREATE INDEX admin_login_audit_by_time ON identity.admin_login_audit (at);

CREATE TABLE identity.outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
