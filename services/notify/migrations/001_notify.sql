-- Notifications: consents (subscriptions) and the durable delivery queue.
CREATE SCHEMA IF NOT EXISTS notify;

-- A user's consent to a template, optionally scoped to one activity or group
-- (scope '' = any). A one-time consent allows one message: it becomes 'used' in the
-- transaction that queues that message. The provider's "user refused" revokes it.
CREATE TABLE notify.subscriptions (
    id          bigserial   PRIMARY KEY,
    user_id     text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    template    text        NOT NULL,
    scope       text        NOT NULL DEFAULT '',
    kind        text        NOT NULL CHECK (kind IN ('one_time', 'long_term')),
    state       text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'used', 'revoked')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX subscriptions_active ON notify.subscriptions (user_id, template, scope)
    WHERE state = 'active';
CREATE INDEX subscriptions_active_by_scope ON notify.subscriptions (template, scope)
    WHERE state = 'active';

-- One row per (event, user, template), ever: a redelivered event finds its row and
-- changes nothing. Rows dropped by consent or rate limit are kept as 'skipped' so that a
-- redelivery is a no-op for them too.
--   pending -> sending -> sent | pending (retry) | dead | refused
CREATE TABLE notify.deliveries (
    id               bigserial   PRIMARY KEY,
    event_id         text        NOT NULL,
    event_type       text        NOT NULL,
    user_id          text        NOT NULL,
    template         text        NOT NULL,
    scope            text        NOT NULL DEFAULT '',
    subscription_id  bigint      REFERENCES notify.subscriptions (id),
    data             jsonb       NOT NULL,
    page             text        NOT NULL DEFAULT '',
    state            text        NOT NULL
                     CHECK (state IN ('pending', 'sending', 'sent', 'dead', 'refused', 'skipped')),
    skip_reason      text        CHECK ((state = 'skipped') = (skip_reason IS NOT NULL)),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_error       text,
    channel          text,
    event_at         timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    finished_at      timestamptz,
    dlq_published_at timestamptz,
    UNIQUE (event_id, user_id, template)
);

CREATE INDEX deliveries_due ON notify.deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON notify.deliveries (locked_until) WHERE state = 'sending';
-- The rolling-hour rate limit counts a user's messages let through.
CREATE INDEX deliveries_user_recent ON notify.deliveries (user_id, created_at)
    WHERE state <> 'skipped';
CREATE INDEX deliveries_sent_by_user ON notify.deliveries (user_id, sent_at DESC, id DESC)
    WHERE state = 'sent';
CREATE INDEX deliveries_dlq_unpublished ON notify.deliveries (id)
    WHERE state = 'dead' AND dlq_published_at IS NULL;
