-- The merchant console: the admin audit log, refunds marked by an operator, and flash
-- sales cancelled by their merchant.
CREATE TABLE orders.admin_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    target_id text        NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX admin_audit_by_target ON orders.admin_audit (target, target_id, id DESC);

-- A refund the service requested (order.refund_requested) is paid out by the provider,
-- outside this system; an operator who confirmed it there marks it here, once.
ALTER TABLE orders.payments
    ADD COLUMN refunded_at timestamptz,
    ADD COLUMN refund_id   text CHECK (length(refund_id) BETWEEN 1 AND 64),
    ADD COLUMN refunded_by text,
    ADD CONSTRAINT payments_refund_marked_whole
        CHECK ((refunded_at IS NULL) = (refund_id IS NULL)
               AND (refund_id IS NULL) = (refunded_by IS NULL));

-- sale_cancelled: the merchant cancelled the flash sale while the order was unpaid.
ALTER TABLE orders.orders DROP CONSTRAINT orders_cancel_reason_check;
ALTER TABLE orders.orders ADD CONSTRAINT orders_cancel_reason_check
    CHECK (cancel_reason IN ('timeout', 'user', 'group_failed', 'sale_cancelled'));

-- Sales cancelled by their merchant (seckill.cancelled), recorded once. An order of such
-- a sale created later (its reservation's event on another partition) is cancelled in
-- the transaction that creates it.
CREATE TABLE orders.cancelled_sales (
    source       text        NOT NULL CHECK (source IN ('seckill', 'groupbuy')),
    sale_id      bigint      NOT NULL,
    cancelled_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, sale_id)
);
CREATE INDEX cancelled_sales_recent ON orders.cancelled_sales (recorded_at);

-- The admin search, newest first, with or without a filter, and the figures of one sale.
CREATE INDEX orders_newest ON orders.orders (created_at DESC, id);
CREATE INDEX orders_by_state ON orders.orders (state, created_at DESC, id);
CREATE INDEX orders_by_sale ON orders.orders (source, activity_id, created_at DESC, id);
-- The unpaid orders of one sale: what a cancellation (and its sweep) looks up.
CREATE INDEX orders_pending_by_sale ON orders.orders (source, activity_id)
    WHERE state = 'pending_payment';
