-- Give back the unit of one member of a COMPLETED group whose order was cancelled
-- (unpaid past its deadline, or cancelled by the shopper), exactly once per member:
-- a redelivered order.cancelled finds the member already released. A failed group's
-- units all came back in expire.lua; its group_failed cancellations are not sent here.
--
-- KEYS[1] stock  KEYS[2] users  KEYS[3] group hash  KEYS[4] group members
-- ARGV[1] user id
-- Returns {"ok", stock} | {"already_released"} | {"not_completed", state} | {"unknown"}.

local state = redis.call('HGET', KEYS[3], 'state')
if not state or not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  return {'unknown'}
end
if state ~= 'completed' then
  return {'not_completed', state}
end
if redis.call('HSETNX', KEYS[3], 'released:' .. ARGV[1], 1) == 0 then
  return {'already_released'}
end
local stock = redis.call('INCRBY', KEYS[1], 1)
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return {'ok', tostring(stock)}
