-- Flash-sale activities: the durable record from which Redis is warmed.
CREATE SCHEMA IF NOT EXISTS seckill;

CREATE TABLE seckill.activities (
    id                      bigserial   PRIMARY KEY,
    sku                     text        NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    title                   text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    price_cents             bigint      NOT NULL CHECK (price_cents >= 0),
    stock                   integer     NOT NULL CHECK (stock > 0),
    starts_at               timestamptz NOT NULL,
    ends_at                 timestamptz NOT NULL,
    per_user_limit          integer     NOT NULL CHECK (per_user_limit > 0),
    payment_timeout_seconds integer     NOT NULL CHECK (payment_timeout_seconds > 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    -- Set once the stock is in Redis. An activity with warmed_at set but no Redis state
    -- lost it (Redis data loss) and must be rebuilt from orders, never re-warmed in full.
    warmed_at               timestamptz,
    CHECK (ends_at > starts_at)
);

CREATE INDEX activities_ends_at ON seckill.activities (ends_at);
