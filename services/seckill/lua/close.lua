-- End a live sale now, or cancel an upcoming or live one: one write to the settings the
-- reserve script reads on every press anyway, so every seckill process refuses presses
-- from this moment on (ended: 410 sale_ended, cancelled: 410 sale_cancelled) at no cost to
-- the hot path. The moment is Redis's own clock, the one reserve.lua decides by.
-- A cancellation appends its seckill.cancelled outbox entry in the same step: the flag and
-- "the order service will be told" are one fact, and a repeat (a retry after a lost reply
-- or a crash before the PostgreSQL COMMIT) finds the flag and appends nothing: exactly
-- one entry per cancellation.
--
-- KEYS[1] meta hash   KEYS[2] outbox stream
-- ARGV[1] "end" or "cancel"
-- Returns {"ok", moment_ms} (also for a repeat: the first moment) | {"not_found"} |
-- {"not_live"} (end of a sale not live) | {"closed"} (cancel of an ended sale).

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'ended_early', 'cancelled')
if not meta[1] then
  return {'not_found'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if ARGV[1] == 'end' then
  if meta[3] then
    return {'ok', meta[3]}
  end
  if meta[4] or now < tonumber(meta[1]) or now >= tonumber(meta[2]) then
    return {'not_live'}
  end
  redis.call('HSET', KEYS[1], 'ends_ms', now, 'ended_early', now)
  return {'ok', tostring(now)}
end

if ARGV[1] ~= 'cancel' then
  return redis.error_reply('close.lua: ARGV[1] must be end or cancel')
end
if meta[4] then
  return {'ok', meta[4]}
end
if meta[3] or now >= tonumber(meta[2]) then
  return {'closed'}
end
redis.call('HSET', KEYS[1], 'cancelled', now)
redis.call('XADD', KEYS[2], '*', 'type', 'seckill.cancelled', 'at', tostring(now))
return {'ok', tostring(now)}
