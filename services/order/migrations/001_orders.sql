-- Orders, created exactly once per reservation, and the transactional outbox of the
-- events about them (written in the same transaction as the change they announce).
CREATE SCHEMA IF NOT EXISTS orders;

CREATE TABLE orders.orders (
    id                uuid        PRIMARY KEY,
    reservation_id    text        NOT NULL UNIQUE,
    activity_id       bigint      NOT NULL,
    user_id           text        NOT NULL,
    sku               text        NOT NULL,
    quantity          integer     NOT NULL CHECK (quantity > 0),
    unit_price_cents  bigint      NOT NULL CHECK (unit_price_cents >= 0),
    amount_cents      bigint      NOT NULL CHECK (amount_cents = unit_price_cents * quantity),
    state             text        NOT NULL DEFAULT 'pending_payment'
                      CHECK (state IN ('pending_payment', 'paid', 'cancelled')),
    cancel_reason     text        CHECK (cancel_reason IN ('timeout', 'user', 'group_failed')),
    reserved_at       timestamptz NOT NULL,
    pay_before        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'cancelled') = (cancel_reason IS NOT NULL))
);

CREATE INDEX orders_by_user ON orders.orders (user_id, created_at DESC, id);
CREATE INDEX orders_by_activity ON orders.orders (activity_id);
CREATE INDEX orders_pending_deadline ON orders.orders (pay_before) WHERE state = 'pending_payment';

CREATE TABLE orders.outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
