-- Edit an upcoming sale's settings and stock, atomically with the check that it has not
-- started by Redis's own clock (the clock reserve.lua opens the sale by): an edit can never
-- change a sale a shopper may already have pressed on. Run by the admin route inside the
-- PostgreSQL transaction that holds the activity's row lock; its answer decides COMMIT
-- (ok) or ROLLBACK (anything else).
--
-- KEYS[1] meta hash   KEYS[2] stock
-- ARGV[1] starts_ms   ARGV[2] ends_ms   ARGV[3] per-user limit   ARGV[4] pay_ms
-- ARGV[5] price   ARGV[6] total stock
-- Returns {"ok", remaining} | {"not_found"} (not warmed) | {"closed"} (ended early or
-- cancelled) | {"started"}. Repeating the same edit changes nothing more.

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'total', 'ended_early', 'cancelled')
if not meta[1] then
  return {'not_found'}
end
if meta[3] or meta[4] then
  return {'closed'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(meta[1]) then
  return {'started'}
end

-- Not started: nothing is reserved, yet the units taken are kept out of the new total
-- the same way set_stock.lua does, so the rule is one.
local remaining = tonumber(redis.call('GET', KEYS[2]) or '0')
local total = tonumber(meta[2] or remaining)
local wanted = tonumber(ARGV[6])
local after = remaining + wanted - total
if after < 0 then
  -- Units were taken (possible only if the clocks disagreed): it has sold, so it started.
  return {'started'}
end
redis.call('SET', KEYS[2], after)
redis.call('HSET', KEYS[1], 'starts_ms', ARGV[1], 'ends_ms', ARGV[2], 'limit', ARGV[3],
  'pay_ms', ARGV[4], 'price', ARGV[5], 'total', ARGV[6])
return {'ok', tostring(after)}
