-- Rewrite a template's terms while its claims have not opened and nothing was issued
-- (PATCH .../admin/templates/{id}), atomically with those checks by Redis TIME, the clock
-- claim.lua opens the claims by: an edit can never change a template a shopper may
-- already hold a coupon of (a claimable template can be granted before its claims open,
-- so "not started" alone is not enough). The caller holds the template's admin lock and
-- commits its PostgreSQL update only after this answered ok.
-- Quantity: nothing is issued, so the stock IS the total. The caller passes the lower of
-- the old and new totals: a raise is applied by set_total.lua after the commit, so a
-- crash in between never leaves Redis offering more than PostgreSQL records.
--
-- KEYS[1] meta  KEYS[2] stock
-- ARGV[1] the total to apply now  ARGV[2] PostgreSQL's total before (a meta without one)
-- ARGV[3..] field, value pairs of the new settings (all but total and closed)
-- Returns {"ok"} | {"not_found"} | {"closed"} | {"started"} | {"issued", issued}.

local meta = redis.call('HMGET', KEYS[1], 'claimable', 'starts_ms', 'closed', 'total')
if not meta[1] then
  return {'not_found'}
end
if meta[3] and meta[3] ~= '' then
  return {'closed'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if meta[1] ~= '1' or now >= tonumber(meta[2]) then
  return {'started'}
end
local total = tonumber(meta[4] or ARGV[2])
local left = tonumber(redis.call('GET', KEYS[2]) or '0')
if left ~= total then
  return {'issued', tostring(total - left)}
end

local new_total = tonumber(ARGV[1])
if new_total ~= total then
  redis.call('SET', KEYS[2], new_total)
end
-- A validity of another kind leaves no field of the old one behind.
redis.call('HDEL', KEYS[1], 'from_ms', 'until_ms', 'days')
redis.call('HSET', KEYS[1], 'total', new_total, unpack(ARGV, 3))
return {'ok'}
