-- Reserve stock for one press, atomically (DESIGN.md, "The reservation path").
-- Checks, in order: activity known, sale window, per-user rate limit, per-user limit
-- (BEFORE taking stock: checking after a decrement leaks or oversells), stock. Then takes
-- the stock, records the reservation and appends the seckill.reserved outbox entry, so
-- "stock taken" and "event will be published" are one fact.
--
-- KEYS[1] meta hash   KEYS[2] stock   KEYS[3] users hash (user -> units held)
-- KEYS[4] reservations hash (id -> JSON)   KEYS[5] outbox stream   KEYS[6] rate counter
-- ARGV[1] user id   ARGV[2] quantity   ARGV[3] reservation id   ARGV[4] presses/second (0: off)
-- Returns {outcome, ...}: {"ok", remaining, pay_before_ms} or {refusal}.

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'limit', 'pay_ms', 'price', 'sku')
if not meta[1] then
  return {'not_found'}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then
  return {'not_started'}
end
if now >= tonumber(meta[2]) then
  return {'ended'}
end

local rate = tonumber(ARGV[4])
if rate > 0 then
  local presses = redis.call('INCR', KEYS[6])
  if presses == 1 then
    redis.call('PEXPIRE', KEYS[6], 1000)
  end
  if presses > rate then
    return {'rate_limited'}
  end
end

local user = ARGV[1]
local qty = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if held + qty > tonumber(meta[3]) then
  return {'limit_reached'}
end

local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock < qty then
  return {'sold_out'}
end

redis.call('DECRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], user, qty)
local deadline = now + tonumber(meta[4])
redis.call('HSET', KEYS[4], ARGV[3], cjson.encode({
  state = 'reserved', user = user, qty = qty, at = tostring(now), deadline = tostring(deadline)
}))
redis.call('XADD', KEYS[5], '*', 'type', 'seckill.reserved', 'rid', ARGV[3], 'user', user,
  'qty', qty, 'at', tostring(now), 'deadline', tostring(deadline), 'price', meta[5], 'sku', meta[6])
return {'ok', tostring(stock - qty), tostring(deadline)}
