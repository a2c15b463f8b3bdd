-- Set the total of what a sale hands out (a flash sale's stock, a coupon template's
-- quantity); the units already taken stay taken (remaining + taken = total, before and
-- after), and the total never goes below them. Atomic with every script that takes from
-- the stock (reserve.lua, claim.lua, grant.lua), so nothing can slip between the read of
-- the remaining stock and the write: nothing is oversold, however they race the change.
-- Every such sale's meta hash has starts_ms ('0' for a coupon template never claimed).
--
-- KEYS[1] meta hash   KEYS[2] stock
-- ARGV[1] the new total   ARGV[2] the total PostgreSQL records, used when the settings
-- do not hold one yet (sales warmed before the total was kept in them)
-- Returns {"ok", remaining, reserved} | {"below_reserved", reserved} | {"not_found"}.
-- Setting the total it already has changes nothing (an idempotent retry).

local known = redis.call('HMGET', KEYS[1], 'starts_ms', 'total')
if not known[1] then
  return {'not_found'}
end
local total = tonumber(known[2] or ARGV[2])
local remaining = tonumber(redis.call('GET', KEYS[2]) or '0')
local wanted = tonumber(ARGV[1])
local reserved = total - remaining
if wanted < reserved then
  return {'below_reserved', tostring(reserved)}
end
if wanted ~= total then
  redis.call('INCRBY', KEYS[2], wanted - total)
end
redis.call('HSET', KEYS[1], 'total', wanted)
return {'ok', tostring(remaining + wanted - total), tostring(reserved)}
