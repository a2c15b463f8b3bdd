-- Coupons (docs/coupons.md): templates and grant rules (written by the admin API),
-- coupons (written by the service's own consumer of the coupons topic and by grants:
-- PostgreSQL is the record, Redis the gate of quantities), the orders they can apply to
-- (a read model of the orders topic), and the transactional outbox of lifecycle events.
CREATE SCHEMA IF NOT EXISTS coupon;

-- kind: amount_off (满减: amount_off_cents once the order reaches threshold_cents),
-- percent_off (折扣: percent_off % of the order, at most max_discount_cents, above
-- threshold_cents), no_threshold (无门槛: amount_off_cents on any order).
-- validity: fixed (valid_from .. valid_until) or relative (valid_days from issue).
-- scope: any order, or orders of the listed activities / campaigns (ids) / skus.
-- claimable: false for templates only granted by rules (下单返券), never claimed.
CREATE TABLE coupon.templates (
    id                    bigserial   PRIMARY KEY,
    name                  text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind                  text        NOT NULL
                          CHECK (kind IN ('amount_off', 'percent_off', 'no_threshold')),
    threshold_cents       bigint      NOT NULL DEFAULT 0 CHECK (threshold_cents >= 0),
    amount_off_cents      bigint      CHECK (amount_off_cents > 0),
    percent_off           integer     CHECK (percent_off BETWEEN 1 AND 99),
    max_discount_cents    bigint      CHECK (max_discount_cents > 0),
    validity              text        NOT NULL CHECK (validity IN ('fixed', 'relative')),
    valid_from            timestamptz,
    valid_until           timestamptz,
    valid_days            integer     CHECK (valid_days BETWEEN 1 AND 3650),
    quantity              integer     NOT NULL CHECK (quantity > 0),
    per_user_limit        integer     NOT NULL CHECK (per_user_limit > 0),
    claimable             boolean     NOT NULL DEFAULT true,
    claim_starts_at       timestamptz,
    claim_ends_at         timestamptz,
    scope                 text        NOT NULL DEFAULT 'any'
                          CHECK (scope IN ('any', 'activities', 'campaigns', 'skus')),
    scope_ids             text[]      NOT NULL DEFAULT '{}',
    usable_on_flash_sales boolean     NOT NULL DEFAULT false,
    created_by            text        NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- Set once the template is in Redis (as seckill.activities.warmed_at).
    warmed_at             timestamptz,
    ended_early_at        timestamptz,
    CHECK ((kind = 'percent_off') = (percent_off IS NOT NULL AND max_discount_cents IS NOT NULL)),
    CHECK ((kind = 'percent_off') = (amount_off_cents IS NULL)),
    CHECK (kind <> 'no_threshold' OR threshold_cents = 0),
    CHECK (kind <> 'amount_off' OR threshold_cents > amount_off_cents),
    CHECK ((validity = 'fixed') = (valid_from IS NOT NULL AND valid_until IS NOT NULL)),
    CHECK ((validity = 'relative') = (valid_days IS NOT NULL)),
    CHECK (valid_until > valid_from),
    CHECK (claimable = (claim_starts_at IS NOT NULL AND claim_ends_at IS NOT NULL)),
    CHECK (claim_ends_at > claim_starts_at),
    CHECK ((scope = 'any') = (cardinality(scope_ids) = 0))
);
CREATE INDEX templates_newest ON coupon.templates (created_at DESC, id DESC);

-- One row per coupon issued. id: '<template id>-<32 hex>' (chosen before the claim or
-- grant script runs, so a redelivered event is the same row). order_id: the order a
-- locked or used coupon belongs to; at most one coupon per order.
CREATE TABLE coupon.coupons (
    id              text        PRIMARY KEY,
    template_id     bigint      NOT NULL REFERENCES coupon.templates (id),
    user_id         text        NOT NULL,
    origin          text        NOT NULL CHECK (origin IN ('claim', 'grant')),
    grant_order_id  uuid,
    grant_rule_id   bigint,
    state           text        NOT NULL DEFAULT 'available'
                    CHECK (state IN ('available', 'locked', 'used', 'expired', 'revoked')),
    order_id        uuid,
    discount_cents  bigint      CHECK (discount_cents > 0),
    valid_from      timestamptz NOT NULL,
    valid_until     timestamptz NOT NULL,
    issued_at       timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    locked_at       timestamptz,
    used_at         timestamptz,
    released_at     timestamptz,
    expired_at      timestamptz,
    revoked_at      timestamptz,
    -- "Expiring in 24 h" was announced (coupon.expiring), once per coupon.
    reminded_at     timestamptz,
    CHECK (valid_until > valid_from),
    CHECK ((state IN ('locked', 'used')) = (order_id IS NOT NULL)),
    CHECK ((order_id IS NULL) = (discount_cents IS NULL)),
    CHECK ((origin = 'grant') = (grant_order_id IS NOT NULL AND grant_rule_id IS NOT NULL))
);
CREATE UNIQUE INDEX coupons_one_per_order ON coupon.coupons (order_id) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX coupons_one_per_grant ON coupon.coupons (grant_order_id, grant_rule_id)
    WHERE origin = 'grant';
CREATE INDEX coupons_by_user ON coupon.coupons (user_id, state, valid_until);
CREATE INDEX coupons_by_template ON coupon.coupons (template_id, state);
CREATE INDEX coupons_available_until ON coupon.coupons (valid_until) WHERE state = 'available';

-- 下单返券: when an order of `trigger` (any order, an activity's, a campaign's) is paid,
-- grant one coupon of template_id.
CREATE TABLE coupon.grant_rules (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    trigger     text        NOT NULL CHECK (trigger IN ('any', 'activity', 'campaign')),
    sale_id     bigint,
    template_id bigint      NOT NULL REFERENCES coupon.templates (id),
    active      boolean     NOT NULL DEFAULT true,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((trigger = 'any') = (sale_id IS NULL))
);

-- Each (paid order, rule) decided once: granted (with its coupon) or exhausted (the
-- template had run out or was ended: recorded, never retried). revoked_at: the order was
-- refunded and the coupon, still unused, was revoked.
CREATE TABLE coupon.grants (
    order_id   uuid        NOT NULL,
    rule_id    bigint      NOT NULL REFERENCES coupon.grant_rules (id),
    user_id    text        NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('granted', 'exhausted')),
    coupon_id  text,
    decided_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (order_id, rule_id),
    CHECK ((outcome = 'granted') = (coupon_id IS NOT NULL))
);

-- The orders coupons can apply to, from the orders topic (order.created, order.paid,
-- order.cancelled). amount_cents: the price before any coupon.
CREATE TABLE coupon.orders (
    id           uuid        PRIMARY KEY,
    user_id      text        NOT NULL,
    source       text        NOT NULL CHECK (source IN ('seckill', 'groupbuy')),
    sale_id      bigint      NOT NULL,
    sku          text        NOT NULL,
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    state        text        NOT NULL
                 CHECK (state IN ('pending_payment', 'paid', 'cancelled')),
    pay_before   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coupon.outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- services/common/audit.py gives this shape to every service's audit log.
CREATE TABLE coupon.admin_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    target_id text        NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX admin_audit_by_target ON coupon.admin_audit (target, target_id, id DESC);
