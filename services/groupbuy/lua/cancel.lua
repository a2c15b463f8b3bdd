-- Cancel an upcoming or live campaign (POST .../admin/campaigns/{id}/cancel). From this
-- step on open.lua and join.lua refuse ('cancelled'), and every open group is due at
-- once: its deadline score becomes 0, so the sweeper (and the cancel route's own sweep)
-- fails it through expire.lua, the one exactly-once path that returns its units and
-- appends group.failed (the order service cancels the members' orders from it and
-- refunds paid ones). The groups keep their own deadline field: the events tell when
-- the group would have closed; expire.lua reads `closed` to act before it.
-- A repeat re-marks any group not failed yet as due and changes nothing else.
--
-- KEYS[1] meta  KEYS[2] deadlines
-- Returns {"ok", now_ms, open groups} | {"already", open groups} | {"ended"}
-- | {"not_found"}.

local meta = redis.call('HMGET', KEYS[1], 'ends_ms', 'closed')
if not meta[1] then
  return {'not_found'}
end
local function all_due()
  local open = redis.call('ZCARD', KEYS[2])
  if open > 0 then
    -- One native step for any number of groups: every score times 0.
    redis.call('ZUNIONSTORE', KEYS[2], 1, KEYS[2], 'WEIGHTS', 0)
  end
  return open
end
if meta[2] == 'cancelled' then
  return {'already', all_due()}
end
if meta[2] == 'ended' then
  return {'ended'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(meta[1]) then
  return {'ended'}
end
redis.call('HSET', KEYS[1], 'closed', 'cancelled')
return {'ok', tostring(now), all_due()}
