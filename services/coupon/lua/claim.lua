-- Claim coupons of one template, one or more claims at once, atomically (docs/coupons.md,
-- "Claims"). Concurrent claims are merged into one call (one command instead of one per
-- claim: the client's per-command cost is a rush's limit); each claim is still decided
-- on its own, in order, as if it had its own script call (seckill's reserve.lua does the
-- same for presses).
-- Checks, in order: template known and claimable, the claim's Idempotency-Key record,
-- not ended by a merchant (end.lua's `closed`), the claim window, the per-user rate
-- limit, the per-user limit (BEFORE taking a coupon: checking after the decrement leaks
-- or over-issues), what is left. Then takes one coupon, counts it for the user and
-- appends the coupon.claimed outbox entry, so "coupon taken" and "coupon will be
-- recorded" are one fact. The validity is computed here, from Redis's own clock: a
-- relative one runs `days` from this moment.
-- A claim with an Idempotency-Key first looks for the key's record: a retry is answered
-- with the first outcome and changes nothing (before the rate limit and the window: the
-- retry of a claim made in the window's last second gets its coupon back). The outcome of
-- a first claim (claimed, or refused for good: limit reached, exhausted) is recorded in
-- the same step; "not now" refusals (not started, rate limited) are not: the retry is a
-- new attempt.
--
-- KEYS[1] meta hash   KEYS[2] stock   KEYS[3] users hash (user -> coupons claimed)
-- KEYS[4] outbox stream   KEYS[5] idempotency records hash (field -> JSON outcome)
-- KEYS[5 + i] rate counter of claim i
-- ARGV[1] claims/second per user (0: off)   ARGV[2] ms records are kept after the claim
-- window ends   ARGV[3] arguments per claim, m: 2 without an Idempotency-Key, 3 with one
-- (a call holds one kind); claim i: ARGV[3 + m(i-1) + 1] user id, + 2 coupon id,
-- + 3 (m = 3) the key's record field
-- Returns one reply per claim: {"ok", from_ms, until_ms, remaining} or {refusal}
-- (not_found, not_started, ended, rate_limited, limit_reached, exhausted);
-- replayed: {"replayed", "ok", from_ms, until_ms, coupon id} or {"replayed", refusal}.

local n = #KEYS - 5
local m = tonumber(ARGV[3])
if n < 1 or (m ~= 2 and m ~= 3) or #ARGV ~= 3 + m * n then
  return redis.error_reply('claim.lua: KEYS and ARGV do not describe the same claims')
end

local function all(reply)
  local replies = {}
  for i = 1, n do
    replies[i] = reply
  end
  return replies
end

local meta = redis.call('HMGET', KEYS[1], 'claimable', 'starts_ms', 'ends_ms', 'limit',
  'validity', 'from_ms', 'until_ms', 'days', 'closed')
-- A template only granted by rules is not there for shoppers: as unknown as a missing one.
if meta[1] ~= '1' then
  return all({'not_found'})
end
local starts, ends = tonumber(meta[2]), tonumber(meta[3])
local limit = tonumber(meta[4])
local closed = meta[9] ~= false and meta[9] ~= ''

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local valid_from, valid_until
if meta[5] == 'fixed' then
  valid_from, valid_until = meta[6], meta[7]
else
  valid_from = tostring(now)
  valid_until = tostring(now + tonumber(meta[8]) * 86400000)
end

local rate = tonumber(ARGV[1])
local keep_until = ends + tonumber(ARGV[2])

local function record(field, first)
  redis.call('HSET', KEYS[5], field, cjson.encode(first))
  redis.call('PEXPIREAT', KEYS[5], keep_until)
end

local function claim(rate_key, user, cid, field)
  if field ~= '' then
    local seen = redis.call('HGET', KEYS[5], field)
    if seen then
      local first = cjson.decode(seen)
      if first.o == 'ok' then
        return {'replayed', 'ok', first.f, first.u, first.c}
      end
      return {'replayed', first.o}
    end
  end
  if closed then
    return {'ended'}
  end
  if now < starts then
    return {'not_started'}
  end
  if now >= ends then
    return {'ended'}
  end

  if rate > 0 then
    local claims = redis.call('INCR', rate_key)
    if claims == 1 then
      redis.call('PEXPIRE', rate_key, 1000)
    end
    if claims > rate then
      return {'rate_limited'}
    end
  end

  local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
  if held >= limit then
    if field ~= '' then
      record(field, {o = 'limit_reached'})
    end
    return {'limit_reached'}
  end

  local left = tonumber(redis.call('GET', KEYS[2]) or '0')
  if left < 1 then
    if field ~= '' then
      record(field, {o = 'exhausted'})
    end
    return {'exhausted'}
  end

  redis.call('DECR', KEYS[2])
  redis.call('HINCRBY', KEYS[3], user, 1)
  redis.call('XADD', KEYS[4], '*', 'type', 'coupon.claimed', 'cid', cid, 'user', user,
    'from', valid_from, 'until', valid_until, 'at', tostring(now))
  if field ~= '' then
    record(field, {o = 'ok', c = cid, f = valid_from, u = valid_until})
  end
  return {'ok', valid_from, valid_until, tostring(left - 1)}
end

local replies = {}
for i = 1, n do
  local a = 3 + m * (i - 1)
  replies[i] = claim(KEYS[5 + i], ARGV[a + 1], ARGV[a + 2], m == 3 and ARGV[a + 3] or '')
end
return replies
