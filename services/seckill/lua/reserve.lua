-- Reserve stock for one or more presses on one activity, atomically (docs/architecture.md,
-- "The reservation path"). Concurrent presses are merged into one call (one command instead
-- of one per press: the client's per-command cost is the hot path's limit); each press
-- is still decided on its own, in order, as if it had its own script call.
-- Checks, in order: activity known, the press's Idempotency-Key record, not cancelled
-- (a merchant's cancel: close.lua sets the flag in the settings read anyway), sale window,
-- per-user rate limit, per-user limit (BEFORE taking stock: checking after a decrement
-- leaks or oversells), stock. Then takes the stock, records the reservation and appends
-- the seckill.reserved outbox entry, so "stock taken" and "event will be published" are
-- one fact.
-- A press with an Idempotency-Key first looks for the key's record: a retry is answered
-- with the first outcome and changes nothing (before the rate limit and the sale window:
-- the retry of a press that reserved in the last second gets its reservation back). The
-- outcome of a first press (reserved, or refused for good: limit reached, sold out) is
-- recorded in the same step, so two presses with one key can never both reserve, however
-- they race or are merged. Refusals that say "not now" (not started, rate limited) are
-- not recorded: the retry is a new attempt.
--
-- KEYS[1] meta hash   KEYS[2] stock   KEYS[3] users hash (user -> units held)
-- KEYS[4] reservations hash (id -> JSON)   KEYS[5] outbox stream
-- KEYS[6] idempotency records hash (field -> JSON outcome; expires with the sale)
-- KEYS[6 + i] rate counter of press i
-- ARGV[1] presses/second per user (0: off)   ARGV[2] ms records are kept after the sale
-- ends   ARGV[3] arguments per press, m: 3 for presses without an Idempotency-Key, 4 for
-- presses with one (a call holds one kind: a press without a key pays nothing for
-- keys); press i: ARGV[3 + m(i-1) + 1] user id, + 2 quantity,
-- + 3 reservation id, + 4 (m = 4) the key's record field
-- Returns one reply per press: {"ok", remaining, pay_before_ms} or {refusal} (cancelled,
-- not_started, ended, ...);
-- replayed: {"replayed", "ok", pay_before_ms, reservation id, quantity} or
-- {"replayed", refusal}; {"key_reused"} when the key's first press had another quantity.

local n = #KEYS - 6
local m = tonumber(ARGV[3])
if n < 1 or (m ~= 3 and m ~= 4) or #ARGV ~= 3 + m * n then
  return redis.error_reply('reserve.lua: KEYS and ARGV do not describe the same presses')
end
-- Validated before any write: an error halfway would leave earlier presses applied.
for i = 1, n do
  local qty = tonumber(ARGV[3 + m * (i - 1) + 2])
  if not qty or qty < 1 then
    return redis.error_reply('reserve.lua: bad quantity')
  end
end

local function all(reply)
  local replies = {}
  for i = 1, n do
    replies[i] = reply
  end
  return replies
end

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'limit', 'pay_ms', 'price', 'sku',
  'cancelled')
if not meta[1] then
  return all({'not_found'})
end
local cancelled = meta[7] ~= false

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Nothing is recorded before the sale starts, so there is no record to look for.
if now < tonumber(meta[1]) then
  return all({cancelled and 'cancelled' or 'not_started'})
end
-- Ended early by a merchant: close.lua moved ends_ms to that moment.
local ended = now >= tonumber(meta[2])

local rate = tonumber(ARGV[1])
local limit = tonumber(meta[3])
local deadline = now + tonumber(meta[4])
local keep_until = tonumber(meta[2]) + tonumber(ARGV[2])

local function replay(raw, qty)
  local first = cjson.decode(raw)
  if first.q ~= qty then
    return {'key_reused'}
  end
  if first.o == 'ok' then
    return {'replayed', 'ok', first.d, first.r, first.q}
  end
  return {'replayed', first.o}
end

local function record(field, first)
  redis.call('HSET', KEYS[6], field, cjson.encode(first))
  redis.call('PEXPIREAT', KEYS[6], keep_until)
end

local function reserve(rate_key, user, qty, rid, field)
  if field ~= '' then
    local seen = redis.call('HGET', KEYS[6], field)
    if seen then
      return replay(seen, qty)
    end
  end
  if cancelled then
    return {'cancelled'}
  end
  if ended then
    return {'ended'}
  end

  if rate > 0 then
    local presses = redis.call('INCR', rate_key)
    if presses == 1 then
      redis.call('PEXPIRE', rate_key, 1000)
    end
    if presses > rate then
      return {'rate_limited'}
    end
  end

  local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
  if held + qty > limit then
    if field ~= '' then
      record(field, {o = 'limit_reached', q = qty})
    end
    return {'limit_reached'}
  end

  local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
  if stock < qty then
    if field ~= '' then
      record(field, {o = 'sold_out', q = qty})
    end
    return {'sold_out'}
  end

  redis.call('DECRBY', KEYS[2], qty)
  redis.call('HINCRBY', KEYS[3], user, qty)
  redis.call('HSET', KEYS[4], rid, cjson.encode({
    state = 'reserved', user = user, qty = qty, at = tostring(now), deadline = tostring(deadline)
  }))
  redis.call('XADD', KEYS[5], '*', 'type', 'seckill.reserved', 'rid', rid, 'user', user,
    'qty', qty, 'at', tostring(now), 'deadline', tostring(deadline), 'price', meta[5], 'sku', meta[6])
  if field ~= '' then
    record(field, {o = 'ok', q = qty, r = rid, d = tostring(deadline)})
  end
  return {'ok', tostring(stock - qty), tostring(deadline)}
end

local replies = {}
for i = 1, n do
  local a = 3 + m * (i - 1)
  replies[i] = reserve(KEYS[6 + i], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3],
    m == 4 and ARGV[a + 4] or '')
end
return replies
