-- End a live campaign now (POST .../admin/campaigns/{id}/end): ends_ms becomes now, so
-- open.lua refuses new groups from this moment ('ended'); groups already open keep
-- their own deadline and may still fill (join.lua does not read ends_ms).
--
-- KEYS[1] meta
-- Returns {"ok", now_ms} | {"already", ends_ms} (ended early before: nothing changed)
-- | {"cancelled"} | {"not_started"} | {"ended"} (past its end) | {"not_found"}.

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'closed')
if not meta[1] then
  return {'not_found'}
end
if meta[3] == 'cancelled' then
  return {'cancelled'}
end
if meta[3] == 'ended' then
  return {'already', meta[2]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then
  return {'not_started'}
end
if now >= tonumber(meta[2]) then
  return {'ended'}
end
redis.call('HSET', KEYS[1], 'closed', 'ended', 'ends_ms', now)
return {'ok', tostring(now)}
