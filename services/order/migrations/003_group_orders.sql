-- Group-buy orders (one per group member, from the groupbuy topic).
--   source       seckill | groupbuy: who the order came from; seckill's stock return and
--                the reconciliation job only look at seckill orders.
--   group_id     the group, for groupbuy orders (reservation_id is "<group id>:<user id>",
--                the natural key that makes order creation idempotent).
--   group_state  open | completed | failed: completed means ready to fulfil; an order of
--                an open group is not cancelled by the payment timeout nor by the shopper.
ALTER TABLE orders.orders
    ADD COLUMN source      text NOT NULL DEFAULT 'seckill'
                           CHECK (source IN ('seckill', 'groupbuy')),
    ADD COLUMN group_id    text,
    ADD COLUMN group_state text CHECK (group_state IN ('open', 'completed', 'failed')),
    ADD CONSTRAINT group_orders_name_their_group
        CHECK ((source = 'groupbuy') = (group_id IS NOT NULL AND group_state IS NOT NULL));

CREATE INDEX orders_by_group ON orders.orders (group_id) WHERE group_id IS NOT NULL;

-- One more allowed transition: a PAID order of a group that failed is cancelled with
-- reason group_failed (its payment is refunded through order.refund_requested, emitted
-- in the same transaction). Everything else still leaves only pending_payment.
CREATE OR REPLACE FUNCTION orders.enforce_order_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND OLD.state <> 'pending_payment'
       AND NOT (OLD.state = 'paid' AND NEW.state = 'cancelled'
                AND NEW.cancel_reason = 'group_failed' AND OLD.source = 'groupbuy') THEN
        RAISE EXCEPTION 'order % is %, it cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
