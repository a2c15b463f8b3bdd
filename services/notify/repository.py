"""PostgreSQL adapter of the notify service: consents, recipients and the delivery queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

import asyncpg
import orjson

from services.common.audit import AuditEntry, AuditSql, changed_fields, record_audit
from services.notify.domain import (
    Intent,
    NewSubscription,
    Recipient,
    RecipientWait,
    StoredTemplate,
    unique_users,
)

INSERT_SUBSCRIPTION = """
INSERT INTO notify.subscriptions (user_id, template, scope, kind)
VALUES ($1, $2, $3, $4)
RETURNING id, user_id, template, scope, kind, state, created_at
"""
# One transaction per user at a time: the consent claim and the rolling-hour count must
# not race another batch (another partition, another replica) for the same user.
LOCK_USER = "SELECT pg_advisory_xact_lock(hashtextextended('notify.user:' || $1, 0))"
DELIVERY_EXISTS = """
SELECT 1 FROM notify.deliveries WHERE event_id = $1 AND user_id = $2 AND template = $3
"""
# The consent a message uses: a long-term one before a one-time one (do not spend a
# one-time consent when a standing one covers the message), the most specific scope
# first, the oldest first.
FIND_CONSENT = """
SELECT id, kind FROM notify.subscriptions
WHERE user_id = $1 AND template = $2 AND state = 'active' AND (scope = '' OR scope = $3)
ORDER BY (kind = 'long_term') DESC, (scope <> '') DESC, id
LIMIT 1
FOR UPDATE
"""
USE_CONSENT = """
UPDATE notify.subscriptions SET state = 'used', used_at = now()
WHERE id = $1 AND state = 'active'
"""
# Messages let through in the rolling hour (skipped and waiting ones were not).
COUNT_RECENT = """
SELECT count(*) FROM notify.deliveries
WHERE user_id = $1 AND queued_at > now() - interval '1 hour'
"""
# $12: seconds a 'waiting' row waits for its recipient (NULL for other states).
INSERT_DELIVERY = """
INSERT INTO notify.deliveries
    (event_id, event_type, user_id, template, scope, subscription_id, data, page, state,
     skip_reason, event_at, queued_at, wait_until)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11,
        CASE WHEN $9 = 'pending' THEN now() END, now() + make_interval(secs => $12))
"""
FIND_OPENID = "SELECT openid FROM notify.recipients WHERE user_id = $1 AND appid = $2"
INSERT_RECIPIENT = """
INSERT INTO notify.recipients (user_id, appid, openid, unionid, registered_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING user_id
"""
GET_RECIPIENT = "SELECT appid, openid FROM notify.recipients WHERE user_id = $1"
# A user's waiting messages, oldest event first: that is the order their consents go in.
LOCK_WAITING_OF_USER = """
SELECT id, template, scope FROM notify.deliveries
WHERE user_id = $1 AND state = 'waiting'
ORDER BY event_at, id
FOR UPDATE
"""
ADMIT_WAITING = """
UPDATE notify.deliveries
SET state = $2, subscription_id = $3, skip_reason = $4, next_attempt_at = now(),
    queued_at = CASE WHEN $2 = 'pending' THEN now() END
WHERE id = $1 AND state = 'waiting'
"""
# Users with waiting messages whose openid is known by now: normally none, since the
# registration admits them in its own transaction; this catches the rest (an appid
# changed in the settings, rows written by hand).
WAITING_USERS_WITH_RECIPIENT = """
SELECT DISTINCT d.user_id FROM notify.deliveries d
JOIN notify.recipients r ON r.user_id = d.user_id AND r.appid = $1
WHERE d.state = 'waiting'
LIMIT $2
"""
# Waiting rows past their deadline. SKIP LOCKED: a registration admitting them right now
# wins, and the row is no longer 'waiting' when this looks again.
LOCK_OVERDUE_WAITING = """
SELECT id, user_id, template FROM notify.deliveries
WHERE state = 'waiting' AND wait_until <= now()
ORDER BY wait_until
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
GIVE_UP_WAITING = """
UPDATE notify.deliveries SET state = 'dead', finished_at = now(), last_error = $2
WHERE id = $1 AND state = 'waiting'
"""
_DELIVERY_COLUMNS = (
    "d.id, d.event_id, d.event_type, d.user_id, d.template, d.data, d.page, d.attempts, "
    "d.event_at, d.state"
)
# Due rows, and rows whose send lease ran out (their dispatcher died mid-send). A claimed
# row is 'sending' with a lease; only the holder of (id, attempts) may record its outcome.
# The openid is read with the row ($3: the appid messages are sent under); NULL if the
# user's registration has not arrived.
CLAIM_DUE = f"""
WITH due AS (
    SELECT id, state AS was FROM notify.deliveries
    WHERE (state = 'pending' AND next_attempt_at <= now())
       OR (state = 'sending' AND locked_until <= now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE notify.deliveries d
SET state = 'sending', attempts = d.attempts + 1,
    locked_until = now() + make_interval(secs => $2)
FROM due WHERE d.id = due.id
RETURNING {_DELIVERY_COLUMNS}, due.was,
    (SELECT r.openid FROM notify.recipients r WHERE r.user_id = d.user_id AND r.appid = $3)
        AS openid
"""
# The provider accepted: true whoever holds the lease now (a holder whose lease ran out
# while it waited is still right), so only the state is checked. A resend already in
# flight then finds the row sent and records nothing.
MARK_SENT = """
UPDATE notify.deliveries
SET state = 'sent', sent_at = now(), finished_at = now(), channel = $2, locked_until = NULL,
    last_error = NULL
WHERE id = $1 AND state IN ('sending', 'pending')
"""
MARK_RETRY = """
UPDATE notify.deliveries
SET state = 'pending', next_attempt_at = now() + make_interval(secs => $3),
    locked_until = NULL, last_error = $4, channel = $5
WHERE id = $1 AND attempts = $2 AND state = 'sending'
"""
MARK_FINISHED = """
UPDATE notify.deliveries
SET state = $3, finished_at = now(), locked_until = NULL, last_error = $4, channel = $5
WHERE id = $1 AND attempts = $2 AND state = 'sending'
RETURNING user_id, template
"""
# "User refused": every consent of this user for this template is withdrawn.
REVOKE_CONSENTS = """
UPDATE notify.subscriptions SET state = 'revoked', revoked_at = now()
WHERE user_id = $1 AND template = $2 AND state = 'active'
"""
LOCK_DEAD_UNPUBLISHED = """
SELECT id, event_id, event_type, user_id, template, attempts, last_error, data, finished_at
FROM notify.deliveries
WHERE state = 'dead' AND dlq_published_at IS NULL
ORDER BY id LIMIT $1
FOR UPDATE SKIP LOCKED
"""
MARK_DLQ_PUBLISHED = """
UPDATE notify.deliveries SET dlq_published_at = now() WHERE id = ANY($1::bigint[])
"""
LIST_SENT = """
SELECT id, event_id, event_type, template, data, page, channel, event_at, sent_at
FROM notify.deliveries
WHERE user_id = $1 AND state = 'sent'
ORDER BY sent_at DESC, id DESC
LIMIT $2
"""
# Activities starting within the lead time, with their subscribers not yet reminded.
# Reads the seckill service's activities table (same database): the reminder needs only
# id, title and start, and a copy of them here would be one more thing to keep in sync.
DUE_REMINDERS = """
SELECT a.id AS activity_id, a.title, a.starts_at, s.user_id
FROM seckill.activities a
JOIN notify.subscriptions s
  ON s.template = 'sale_starting' AND s.state = 'active' AND s.scope = 'activity:' || a.id
WHERE a.starts_at > now() AND a.starts_at <= now() + make_interval(secs => $1)
  AND NOT EXISTS (
      SELECT 1 FROM notify.deliveries d
      WHERE d.user_id = s.user_id AND d.template = 'sale_starting' AND d.scope = s.scope)
ORDER BY a.starts_at, a.id, s.user_id
LIMIT $2
"""
COUNT_BY_STATE = "SELECT state, count(*) AS n FROM notify.deliveries GROUP BY state"
COUNT_BY_TEMPLATE_AND_STATE = """
SELECT template, state, count(*) AS n FROM notify.deliveries GROUP BY template, state
"""
# The merchant console's template ids (migration 003).
AUDIT = AuditSql.for_schema("notify")
STORED_TEMPLATES = """
SELECT kind, provider_template_id, updated_at, updated_by FROM notify.templates ORDER BY kind
"""
# Two operators setting one kind at once: the second one's "before" is the first one's id.
LOCK_TEMPLATE_KIND = "SELECT pg_advisory_xact_lock(hashtextextended('notify.template:' || $1, 0))"
STORED_TEMPLATE = """
SELECT kind, provider_template_id, updated_at, updated_by FROM notify.templates WHERE kind = $1
"""
UPSERT_TEMPLATE = """
INSERT INTO notify.templates (kind, provider_template_id, updated_by) VALUES ($1, $2, $3)
ON CONFLICT (kind) DO UPDATE
SET provider_template_id = EXCLUDED.provider_template_id, updated_at = now(),
    updated_by = EXCLUDED.updated_by
RETURNING kind, provider_template_id, updated_at, updated_by
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: str
    event_type: str
    user_id: str
    template: str
    data: dict[str, dict[str, str]]
    page: str
    attempts: int
    event_at: datetime
    resumed: bool = False  # re-claimed after its dispatcher died mid-send
    openid: str | None = None  # the user's openid under the sending appid, if known


@dataclass
class EnqueueResult:
    queued: list[Intent] = field(default_factory=list)
    duplicates: list[Intent] = field(default_factory=list)
    no_consent: list[Intent] = field(default_factory=list)
    rate_limited: list[Intent] = field(default_factory=list)
    waiting: list[Intent] = field(default_factory=list)  # for their user's openid


@dataclass(frozen=True, slots=True)
class Admission:
    """What the consent and the rate limit make of a message: 'pending' with the consent
    it spends, or 'skipped' with the reason."""

    state: str
    subscription_id: int | None = None
    skip_reason: str | None = None


QUEUED = Admission("pending")


@dataclass
class RecipientsResult:
    added: list[Recipient] = field(default_factory=list)
    duplicates: list[Recipient] = field(default_factory=list)
    # Templates of waiting messages the registrations let go, by what became of them:
    # "pending" (queued), "no_consent", "rate_limited".
    admitted: list[tuple[str, str]] = field(default_factory=list)


class RecipientConflict(Exception):
    """A registration that contradicts a recorded one (the user under another openid, or
    the openid already another user's): never applied, dead-lettered for an operator."""


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        user_id=row["user_id"],
        template=row["template"],
        data=orjson.loads(row["data"]),
        page=row["page"],
        attempts=row["attempts"],
        event_at=row["event_at"],
        resumed=row["was"] == "sending",
        openid=row["openid"],
    )


class SubscriptionRow(TypedDict):
    """A notify.subscriptions row as INSERT_SUBSCRIPTION returns it."""

    id: int
    user_id: str
    template: str
    scope: str
    kind: str
    state: str
    created_at: datetime


class NotifyRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def subscribe(self, sub: NewSubscription) -> SubscriptionRow:
        row = await self._pool.fetchrow(
            INSERT_SUBSCRIPTION, sub.user_id, sub.template, sub.scope, sub.kind.value
        )
        assert row is not None
        return SubscriptionRow(
            id=row["id"],
            user_id=row["user_id"],
            template=row["template"],
            scope=row["scope"],
            kind=row["kind"],
            state=row["state"],
            created_at=row["created_at"],
        )

    async def enqueue(
        self,
        intents: Sequence[Intent],
        rate_limit_per_hour: int,
        wait: RecipientWait | None = None,
    ) -> EnqueueResult:
        """Turn intents into delivery rows in ONE transaction, with the consent claim and
        the rate limit: a message is queued only with an active matching consent (a
        one-time consent becomes used) and while the user is under the limit; an intent
        whose (event, user, template) already has a row changes nothing.

        With `wait` (a channel that sends to openids), a consented message for a user
        whose openid under wait.appid is unknown is written 'waiting' instead, claiming
        nothing: the user's registration admits it (add_recipients) or it is given up on
        after wait.seconds (give_up_waiting)."""
        result = EnqueueResult()
        async with self._pool.acquire() as conn, conn.transaction():
            # Sorted: two batches locking the same users cannot deadlock. Registrations
            # take the same lock, so a message is either written 'waiting' before its
            # user's registration commits (and admitted by it) or sees the recipient.
            for user in unique_users(intents):
                await conn.execute(LOCK_USER, user)
            seen: set[tuple[str, str, str]] = set()
            known: dict[str, bool] = {}
            for intent in sorted(intents, key=lambda i: (i.event_at, i.event_id)):
                key = (intent.event_id, intent.user_id, intent.template)
                if key in seen or await conn.fetchval(DELIVERY_EXISTS, *key):
                    result.duplicates.append(intent)
                    continue
                seen.add(key)
                if wait is not None and intent.user_id not in known:
                    openid = await conn.fetchval(FIND_OPENID, intent.user_id, wait.appid)
                    known[intent.user_id] = openid is not None
                if wait is not None and not known[intent.user_id]:
                    consent = await conn.fetchrow(
                        FIND_CONSENT, intent.user_id, intent.template, intent.scope
                    )
                    if consent is None:
                        await self._insert(conn, intent, Admission("skipped", None, "no_consent"))
                        result.no_consent.append(intent)
                    else:
                        await self._insert(conn, intent, Admission("waiting"), wait.seconds)
                        result.waiting.append(intent)
                    continue
                admission = await self._admit(
                    conn, intent.user_id, intent.template, intent.scope, rate_limit_per_hour
                )
                await self._insert(conn, intent, admission)
                if admission.skip_reason == "no_consent":
                    result.no_consent.append(intent)
                elif admission.skip_reason == "rate_limited":
                    result.rate_limited.append(intent)
                else:
                    result.queued.append(intent)
        return result

    @staticmethod
    async def _admit(
        conn: asyncpg.Connection, user_id: str, template: str, scope: str, rate_limit: int
    ) -> Admission:
        """The consent claim and the rate limit, for one message (the caller holds the
        user's lock)."""
        consent = await conn.fetchrow(FIND_CONSENT, user_id, template, scope)
        if consent is None:
            return Admission("skipped", None, "no_consent")
        if rate_limit > 0 and await conn.fetchval(COUNT_RECENT, user_id) >= rate_limit:
            return Admission("skipped", None, "rate_limited")
        if consent["kind"] == "one_time":
            await conn.execute(USE_CONSENT, consent["id"])
        return Admission("pending", consent["id"])

    @staticmethod
    async def _insert(
        conn: asyncpg.Connection,
        intent: Intent,
        admission: Admission,
        wait_seconds: float | None = None,
    ) -> None:
        await conn.execute(
            INSERT_DELIVERY,
            intent.event_id,
            intent.event_type,
            intent.user_id,
            intent.template,
            intent.scope,
            admission.subscription_id,
            orjson.dumps(intent.data).decode(),
            intent.page,
            admission.state,
            admission.skip_reason,
            intent.event_at,
            wait_seconds,
        )

    async def add_recipients(
        self, recipients: Sequence[Recipient], appid: str, rate_limit_per_hour: int
    ) -> RecipientsResult:
        """Record registrations and, in the same transaction, admit the waiting messages
        of the users now known under `appid` (consent claimed and rate limit applied then,
        oldest event first). A registration already recorded changes nothing; one that
        contradicts a recorded one raises RecipientConflict (nothing of the batch kept)."""
        result = RecipientsResult()
        async with self._pool.acquire() as conn, conn.transaction():
            for user in sorted({r.user_id for r in recipients}):
                await conn.execute(LOCK_USER, user)
            for r in recipients:
                added = await conn.fetchval(
                    INSERT_RECIPIENT, r.user_id, r.appid, r.openid, r.unionid, r.registered_at
                )
                if added is None:
                    recorded = await conn.fetchrow(GET_RECIPIENT, r.user_id)
                    if recorded is None or (recorded["appid"], recorded["openid"]) != (
                        r.appid,
                        r.openid,
                    ):
                        raise RecipientConflict(
                            f"user {r.user_id}: openid under {r.appid} conflicts with a "
                            "recorded registration"
                        )
                    result.duplicates.append(r)
                    continue
                result.added.append(r)
                if r.appid == appid:
                    result.admitted += await self._admit_waiting(
                        conn, r.user_id, rate_limit_per_hour
                    )
        return result

    async def _admit_waiting(
        self, conn: asyncpg.Connection, user_id: str, rate_limit: int
    ) -> list[tuple[str, str]]:
        admitted = []
        for row in await conn.fetch(LOCK_WAITING_OF_USER, user_id):
            admission = await self._admit(conn, user_id, row["template"], row["scope"], rate_limit)
            await conn.execute(
                ADMIT_WAITING,
                row["id"],
                admission.state,
                admission.subscription_id,
                admission.skip_reason,
            )
            admitted.append((row["template"], admission.skip_reason or admission.state))
        return admitted

    async def admit_known_waiting(
        self, appid: str, rate_limit_per_hour: int, limit: int
    ) -> list[tuple[str, str]]:
        """Admit waiting messages of users whose openid is known after all (see
        WAITING_USERS_WITH_RECIPIENT); what became of them, as add_recipients says."""
        users = [
            r["user_id"] for r in await self._pool.fetch(WAITING_USERS_WITH_RECIPIENT, appid, limit)
        ]
        admitted: list[tuple[str, str]] = []
        if not users:
            return admitted
        async with self._pool.acquire() as conn, conn.transaction():
            for user in sorted(users):
                await conn.execute(LOCK_USER, user)
            for user in sorted(users):
                admitted += await self._admit_waiting(conn, user, rate_limit_per_hour)
        return admitted

    async def give_up_waiting(
        self, limit: int, reason: Callable[[str], str]
    ) -> list[asyncpg.Record]:
        """Waiting rows past their deadline become 'dead' with reason(user_id) (the DLQ
        publisher then sends them to notify.dlq); returns them (id, user_id, template)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = list(await conn.fetch(LOCK_OVERDUE_WAITING, limit))
            if rows:
                await conn.executemany(
                    GIVE_UP_WAITING, [(r["id"], reason(r["user_id"])) for r in rows]
                )
            return rows

    async def claim_due(self, limit: int, lease_seconds: float, appid: str) -> list[Delivery]:
        """Lease up to limit due rows to this dispatcher (state 'sending', attempts + 1),
        each with its user's openid under appid (None if unknown)."""
        rows = await self._pool.fetch(CLAIM_DUE, limit, lease_seconds, appid)
        return [_delivery(r) for r in rows]

    async def mark_sent(self, d: Delivery, channel: str) -> bool:
        status = await self._pool.execute(MARK_SENT, d.id, channel)
        return bool(status == "UPDATE 1")

    async def mark_retry(self, d: Delivery, delay: float, error: str, channel: str) -> bool:
        status = await self._pool.execute(MARK_RETRY, d.id, d.attempts, delay, error, channel)
        return bool(status == "UPDATE 1")

    async def mark_dead(self, d: Delivery, error: str, channel: str) -> bool:
        row = await self._pool.fetchrow(MARK_FINISHED, d.id, d.attempts, "dead", error, channel)
        return row is not None

    async def mark_refused(self, d: Delivery, error: str, channel: str) -> bool:
        """The user refused: the message is finished and their consents to the template
        are revoked, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(MARK_FINISHED, d.id, d.attempts, "refused", error, channel)
            if row is None:
                return False
            await conn.execute(REVOKE_CONSENTS, row["user_id"], row["template"])
            return True

    async def publish_dead(
        self, limit: int, publish: Callable[[list[asyncpg.Record]], Awaitable[None]]
    ) -> int:
        """Hand up to limit dead rows not yet in notify.dlq to publish (which returns once
        Kafka acknowledged them) and mark them published, in one transaction holding their
        locks: a crash before the commit publishes them again, with the same event ids."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = list(await conn.fetch(LOCK_DEAD_UNPUBLISHED, limit))
            if rows:
                await publish(rows)
                await conn.execute(MARK_DLQ_PUBLISHED, [r["id"] for r in rows])
            return len(rows)

    async def list_sent(self, user_id: str, limit: int) -> list[asyncpg.Record]:
        return list(await self._pool.fetch(LIST_SENT, user_id, limit))

    async def due_reminders(self, lead_seconds: float, limit: int) -> list[asyncpg.Record]:
        return list(await self._pool.fetch(DUE_REMINDERS, lead_seconds, limit))

    async def count_by_template_and_state(self) -> list[tuple[str, str, int]]:
        """Delivery rows by (template, state): one pass over the table, for the console."""
        rows = await self._pool.fetch(COUNT_BY_TEMPLATE_AND_STATE, timeout=10)
        return [(r["template"], r["state"], int(r["n"])) for r in rows]

    async def stored_templates(self) -> list[StoredTemplate]:
        return [StoredTemplate(**dict(r)) for r in await self._pool.fetch(STORED_TEMPLATES)]

    async def set_template(
        self, kind: str, provider_template_id: str, actor: str, default_id: str
    ) -> StoredTemplate:
        """Store the provider template id of a kind and audit the change (template.set),
        in one transaction; setting the id it already has changes nothing."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_TEMPLATE_KIND, kind)
            row = await conn.fetchrow(STORED_TEMPLATE, kind)
            current = None if row is None else StoredTemplate(**dict(row))
            if current is not None and current.provider_template_id == provider_template_id:
                return current
            before, after = changed_fields(
                {
                    "provider_template_id": (
                        default_id if current is None else current.provider_template_id
                    ),
                    "source": "default" if current is None else "set",
                },
                {"provider_template_id": provider_template_id, "source": "set"},
            )
            stored = StoredTemplate(
                **dict(await conn.fetchrow(UPSERT_TEMPLATE, kind, provider_template_id, actor))
            )
            await record_audit(
                conn, AUDIT, AuditEntry(actor, "template.set", "template", kind, before, after)
            )
            return stored

    async def count_by_state(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in await self._pool.fetch(COUNT_BY_STATE, timeout=5)}

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool
