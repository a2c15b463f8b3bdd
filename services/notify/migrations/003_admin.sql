-- The merchant console: provider template ids set by a merchant, and the admin audit log.

-- The provider's template id each kind of message is sent with, when a merchant set one
-- (it wins over NOTIFY_TEMPLATE_IDS). Kinds without a row use the setting's id.
CREATE TABLE notify.templates (
    kind                 text        PRIMARY KEY,
    provider_template_id text        NOT NULL CHECK (provider_template_id ~ '^[A-Za-z0-9_-]{1,128}$'),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           text        NOT NULL
);

CREATE TABLE notify.admin_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    target_id text        NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX admin_audit_by_target ON notify.admin_audit (target, target_id, id DESC);
