-- Order lifecycle: payment, cancellation, reminders; transitions enforced in the database.
ALTER TABLE orders.orders
    ADD COLUMN paid_at          timestamptz,
    ADD COLUMN cancelled_at     timestamptz,
    ADD COLUMN reminder_sent_at timestamptz;

-- A paid order cannot be cancelled and a cancelled one cannot be paid: only
-- pending_payment may change state, whatever code path (or person with psql) tries.
CREATE FUNCTION orders.enforce_order_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND OLD.state <> 'pending_payment' THEN
        RAISE EXCEPTION 'order % is %, it cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER order_state_transitions
    BEFORE UPDATE OF state ON orders.orders
    FOR EACH ROW EXECUTE FUNCTION orders.enforce_order_transition();

-- Every payment notification that was acted on, keyed by the provider's transaction id
-- (a replayed callback finds its row and changes nothing).
CREATE TABLE orders.payments (
    transaction_id text        PRIMARY KEY,
    order_id       uuid        NOT NULL REFERENCES orders.orders (id),
    amount_cents   bigint      NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('applied', 'refund_requested')),
    refund_reason  text        CHECK ((outcome = 'refund_requested') = (refund_reason IS NOT NULL)),
    received_at    timestamptz NOT NULL DEFAULT now()
);

-- At most one payment is ever applied to an order.
CREATE UNIQUE INDEX payments_one_applied_per_order
    ON orders.payments (order_id) WHERE outcome = 'applied';

CREATE INDEX orders_pending_reminder ON orders.orders (pay_before)
    WHERE state = 'pending_payment' AND reminder_sent_at IS NULL;
