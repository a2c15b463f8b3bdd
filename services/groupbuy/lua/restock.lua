-- Set a campaign's stock TOTAL (PUT .../admin/campaigns/{id}/stock, and the raise part of
-- an edit), never below the units groups hold: all N of each open group, one per member
-- of a completed group whose unit was not released. Those are total - remaining, checked
-- and changed in one step, so a group opening at the same moment cannot slip between.
-- Idempotent on the total: meta `total` is the total Redis has applied, so running it
-- again with the same total changes nothing, and running it after a crash that left
-- PostgreSQL ahead (a raise is committed there first) catches Redis up.
--
-- KEYS[1] meta  KEYS[2] stock
-- ARGV[1] the new total  ARGV[2] PostgreSQL's total before (for a meta without `total`)
-- Returns {"ok", remaining, reserved} | {"below_reserved", reserved} | {"not_found"}.

local meta = redis.call('HMGET', KEYS[1], 'size', 'total')
if not meta[1] then
  return {'not_found'}
end
local total = tonumber(meta[2] or ARGV[2])
local remaining = tonumber(redis.call('GET', KEYS[2]) or '0')
local reserved = total - remaining
local new_total = tonumber(ARGV[1])
if new_total < reserved then
  return {'below_reserved', reserved}
end
if new_total ~= total then
  remaining = redis.call('INCRBY', KEYS[2], new_total - total)
end
if new_total ~= total or not meta[2] then
  redis.call('HSET', KEYS[1], 'total', new_total)
end
return {'ok', remaining, reserved}
