-- The merchant console's admin API (docs/admin-api.md): a campaign can be ended early or
-- cancelled, and every change is audited in the same transaction as the change.
ALTER TABLE groupbuy.campaigns
    ADD COLUMN ended_early_at timestamptz,
    ADD COLUMN cancelled_at   timestamptz,
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now();

-- The admin list pages newest start first, optionally filtered by state.
CREATE INDEX campaigns_by_start ON groupbuy.campaigns (starts_at DESC, id DESC);

-- The shape every service's audit log has (services/common/audit.py).
CREATE TABLE groupbuy.admin_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    target_id text        NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX admin_audit_by_target ON groupbuy.admin_audit (target, target_id, id DESC);
