-- Rewrite an upcoming campaign's settings and stock (PATCH .../admin/campaigns/{id}),
-- atomically with the check that it has not started by Redis TIME, the clock open.lua
-- judges the start by: an edit can never land after a group opened under the old
-- settings. The caller holds the campaign's row lock and commits its PostgreSQL update
-- only after this answered ok (and rolls back otherwise).
-- Stock: before the start no group holds units, so the stock IS the total. The caller
-- passes the lower of the old and new totals: a raise is applied by restock.lua after
-- the commit, so that a crash in between never leaves Redis with more stock than
-- PostgreSQL records.
--
-- KEYS[1] meta  KEYS[2] stock
-- ARGV[1] the total to apply now  ARGV[2] PostgreSQL's total (for a meta without `total`)
-- ARGV[3..] field, value pairs of the new settings
-- Returns {"ok"} | {"not_found"} | {"ended"} | {"cancelled"} | {"started"}.

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'closed', 'total')
if not meta[1] then
  return {'not_found'}
end
if meta[2] == 'cancelled' or meta[2] == 'ended' then
  return {meta[2]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(meta[1]) then
  return {'started'}
end

local total = tonumber(meta[3] or ARGV[2])
local new_total = tonumber(ARGV[1])
if new_total ~= total then
  redis.call('INCRBY', KEYS[2], new_total - total)
end
redis.call('HSET', KEYS[1], 'total', new_total, unpack(ARGV, 3))
return {'ok'}
