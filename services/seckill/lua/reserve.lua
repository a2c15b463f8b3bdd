-- Reserve stock for one or more presses on one activity, atomically (DESIGN.md, "The
-- reservation path"). Concurrent presses are merged into one call (one command instead
-- of one per press: the client's per-command cost is the hot path's limit); each press
-- is still decided on its own, in order, as if it had its own script call.
-- Checks, in order: activity known, sale window, per-user rate limit, per-user limit
-- (BEFORE taking stock: checking after a decrement leaks or oversells), stock. Then takes
-- the stock, records the reservation and appends the seckill.reserved outbox entry, so
-- "stock taken" and "event will be published" are one fact.
--
-- KEYS[1] meta hash   KEYS[2] stock   KEYS[3] users hash (user -> units held)
-- KEYS[4] reservations hash (id -> JSON)   KEYS[5] outbox stream
-- KEYS[5 + i] rate counter of press i
-- ARGV[1] presses/second per user (0: off); press i: ARGV[3i - 1] user id,
-- ARGV[3i] quantity, ARGV[3i + 1] reservation id
-- Returns one reply per press: {"ok", remaining, pay_before_ms} or {refusal}.

local n = #KEYS - 5
if n < 1 or #ARGV ~= 1 + 3 * n then
  return redis.error_reply('reserve.lua: KEYS and ARGV do not describe the same presses')
end
-- Validated before any write: an error halfway would leave earlier presses applied.
for i = 1, n do
  local qty = tonumber(ARGV[3 * i])
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

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'limit', 'pay_ms', 'price', 'sku')
if not meta[1] then
  return all({'not_found'})
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then
  return all({'not_started'})
end
if now >= tonumber(meta[2]) then
  return all({'ended'})
end

local rate = tonumber(ARGV[1])
local limit = tonumber(meta[3])
local deadline = now + tonumber(meta[4])

local function reserve(rate_key, user, qty, rid)
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
    return {'limit_reached'}
  end

  local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
  if stock < qty then
    return {'sold_out'}
  end

  redis.call('DECRBY', KEYS[2], qty)
  redis.call('HINCRBY', KEYS[3], user, qty)
  redis.call('HSET', KEYS[4], rid, cjson.encode({
    state = 'reserved', user = user, qty = qty, at = tostring(now), deadline = tostring(deadline)
  }))
  redis.call('XADD', KEYS[5], '*', 'type', 'seckill.reserved', 'rid', rid, 'user', user,
    'qty', qty, 'at', tostring(now), 'deadline', tostring(deadline), 'price', meta[5], 'sku', meta[6])
  return {'ok', tostring(stock - qty), tostring(deadline)}
end

local replies = {}
for i = 1, n do
  replies[i] = reserve(KEYS[5 + i], ARGV[3 * i - 1], tonumber(ARGV[3 * i]), ARGV[3 * i + 1])
end
return replies
