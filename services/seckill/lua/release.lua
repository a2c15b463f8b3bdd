-- Return a reservation's stock, exactly once per reservation id (a redelivered
-- cancellation is a no-op), and append the seckill.released outbox entry.
--
-- KEYS[1] stock   KEYS[2] users hash   KEYS[3] reservations hash   KEYS[4] outbox stream
-- ARGV[1] reservation id   ARGV[2] reason
-- Returns {"ok", remaining} | {"already_released"} | {"unknown"}.

local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then
  return {'unknown'}
end
local r = cjson.decode(raw)
if r.state == 'released' then
  return {'already_released'}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
r.state = 'released'
r.reason = ARGV[2]
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(r))
local stock = redis.call('INCRBY', KEYS[1], r.qty)
-- The units come back to the shopper's allowance too, so they may buy again.
if redis.call('HINCRBY', KEYS[2], r.user, -r.qty) <= 0 then
  redis.call('HDEL', KEYS[2], r.user)
end
redis.call('XADD', KEYS[4], '*', 'type', 'seckill.released', 'rid', ARGV[1], 'user', r.user,
  'qty', r.qty, 'reason', ARGV[2], 'at', tostring(now))
return {'ok', tostring(stock)}
