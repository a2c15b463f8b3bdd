-- End a template now (POST .../admin/templates/{id}/end): one write to the settings
-- claim.lua and grant.lua read anyway, so every process refuses claims (410 claim_ended)
-- and grants from this moment on, at no cost to the hot path. The moment is Redis's own
-- clock, the one claims are decided by. Coupons already issued stay valid.
--
-- KEYS[1] meta
-- Returns {"ok", now_ms} | {"already"} (ended before: nothing changed) | {"not_found"}.

local meta = redis.call('HMGET', KEYS[1], 'claimable', 'closed')
if not meta[1] then
  return {'not_found'}
end
if meta[2] and meta[2] ~= '' then
  return {'already'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'closed', 'ended')
return {'ok', tostring(now)}
