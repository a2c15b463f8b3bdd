-- The merchant console's admin API (docs/admin-api.md): a sale can be ended early or
-- cancelled, and every change is audited in the same transaction as the change.
ALTER TABLE seckill.activities
    ADD COLUMN ended_early_at timestamptz,
    ADD COLUMN cancelled_at   timestamptz,
    ADD COLUMN updated_at     timestamptz NOT NULL DEFAULT now();

-- The admin list: newest start first.
CREATE INDEX activities_starts_at ON seckill.activities (starts_at DESC, id DESC);

-- services/common/audit.py gives this shape to every service's audit log.
CREATE TABLE seckill.admin_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    target_id text        NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX admin_audit_by_target ON seckill.admin_audit (target, target_id, id DESC);
