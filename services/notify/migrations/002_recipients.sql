-- Recipients: a user's openid on the mini-program platform, from identity's
-- `user.registered` events (topic `users`). The WeChat send API addresses a message to
-- the openid (`touser`), never to our user id. One row per user; a redelivered event
-- changes nothing.
CREATE TABLE notify.recipients (
    user_id       text        PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 128),
    appid         text        NOT NULL,
    openid        text        NOT NULL,
    unionid       text,
    registered_at timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Identity keeps one user per (appid, openid): two users on one openid would send one
    -- person the other's messages, so such an event is refused (and dead-lettered).
    UNIQUE (appid, openid)
);

-- A message whose user has no known openid yet waits ('waiting', until wait_until)
-- without holding a consent or counting against the rate limit; the user's registration
-- turns it into 'pending' (consent claimed then), or it goes 'dead' at wait_until.
--   waiting -> pending | skipped | dead
ALTER TABLE notify.deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE notify.deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('waiting', 'pending', 'sending', 'sent', 'dead', 'refused', 'skipped'));
ALTER TABLE notify.deliveries ADD COLUMN wait_until timestamptz;
ALTER TABLE notify.deliveries ADD CONSTRAINT deliveries_waiting_has_deadline
    CHECK (state <> 'waiting' OR wait_until IS NOT NULL);

-- When the message was let through (consent claimed, under the rate limit). The rolling
-- hour counts these, not row creation: a message that waited for its recipient counts
-- from when it was queued, and one that never was (skipped, waiting, given up on while
-- waiting) does not count at all.
ALTER TABLE notify.deliveries ADD COLUMN queued_at timestamptz;
UPDATE notify.deliveries SET queued_at = created_at WHERE state <> 'skipped';
DROP INDEX notify.deliveries_user_recent;
CREATE INDEX deliveries_user_queued ON notify.deliveries (user_id, queued_at)
    WHERE queued_at IS NOT NULL;
CREATE INDEX deliveries_waiting ON notify.deliveries (wait_until) WHERE state = 'waiting';
CREATE INDEX deliveries_waiting_by_user ON notify.deliveries (user_id, event_at)
    WHERE state = 'waiting';
