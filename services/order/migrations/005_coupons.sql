-- Coupons (docs/coupons.md, "Redemption"): the coupon service locks a coupon to a pending
-- order and publishes coupon.locked; the order service applies it here, once. From then
-- on amount_cents is the amount due, which a payment must match.
--   discount_cents  what the coupon takes off (0: no coupon)
--   coupon_id       the coupon applied (NULL: none); at most one per order
ALTER TABLE orders.orders
    ADD COLUMN discount_cents bigint NOT NULL DEFAULT 0 CHECK (discount_cents >= 0),
    ADD COLUMN coupon_id      text CHECK (length(coupon_id) BETWEEN 1 AND 100);

-- The amount was the price times the quantity (001's unnamed check, which PostgreSQL
-- names orders_check); it is now that minus the discount. A discount never takes an order
-- below 1 cent (a payment of 0 is no payment); an order without one keeps the price it
-- had, even 0 (a free item is a valid flash sale).
ALTER TABLE orders.orders DROP CONSTRAINT orders_check;
ALTER TABLE orders.orders
    ADD CONSTRAINT orders_amount_is_price_less_discount
        CHECK (amount_cents = unit_price_cents * quantity - discount_cents),
    ADD CONSTRAINT orders_discounted_amount_at_least_a_cent
        CHECK (discount_cents = 0 OR amount_cents >= 1),
    ADD CONSTRAINT orders_discount_names_its_coupon
        CHECK ((discount_cents > 0) = (coupon_id IS NOT NULL));
