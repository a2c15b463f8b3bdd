-- Group buying: campaigns (written on create), groups and members (written by the
-- groupbuy service's own consumer of the groupbuy topic: PostgreSQL is the record,
-- Redis the gate).
CREATE SCHEMA IF NOT EXISTS groupbuy;

CREATE TABLE groupbuy.campaigns (
    id                       bigserial   PRIMARY KEY,
    sku                      text        NOT NULL,
    title                    text        NOT NULL,
    group_price_cents        bigint      NOT NULL CHECK (group_price_cents >= 0),
    single_price_cents       bigint      NOT NULL CHECK (single_price_cents > group_price_cents),
    group_size               integer     NOT NULL CHECK (group_size >= 2),
    stock                    integer     NOT NULL CHECK (stock >= group_size),
    starts_at                timestamptz NOT NULL,
    ends_at                  timestamptz NOT NULL CHECK (ends_at > starts_at),
    group_window_seconds     integer     NOT NULL CHECK (group_window_seconds > 0),
    per_user_limit           integer     NOT NULL CHECK (per_user_limit > 0),
    virtual_completion       boolean     NOT NULL,
    min_real_members         integer     NOT NULL
                             CHECK (min_real_members BETWEEN 1 AND group_size),
    payment_timeout_seconds  integer     NOT NULL CHECK (payment_timeout_seconds > 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    warmed_at                timestamptz
);

CREATE TABLE groupbuy.groups (
    id            text        PRIMARY KEY,
    campaign_id   bigint      NOT NULL REFERENCES groupbuy.campaigns (id),
    leader_id     text        NOT NULL,
    size          integer     NOT NULL,
    state         text        NOT NULL DEFAULT 'open'
                  CHECK (state IN ('open', 'completed', 'failed')),
    completion    text        CHECK (completion IN ('full', 'virtual')),
    opened_at     timestamptz NOT NULL,
    deadline      timestamptz NOT NULL,
    settled_at    timestamptz,
    CHECK ((state = 'completed') = (completion IS NOT NULL)),
    CHECK ((state = 'open') = (settled_at IS NULL))
);

CREATE INDEX groups_by_campaign ON groupbuy.groups (campaign_id, state);

-- No foreign key to groups: a member's event may be recorded in a batch before its
-- group's (redelivery), and both are upserts.
CREATE TABLE groupbuy.members (
    group_id   text        NOT NULL,
    user_id    text        NOT NULL,
    position   integer     NOT NULL CHECK (position >= 1),
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (group_id, user_id),
    UNIQUE (group_id, position)
);
