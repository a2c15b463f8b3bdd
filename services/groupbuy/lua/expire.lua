-- Settle a group past its deadline, exactly once (the sweeper calls it; replicas may
-- race, and a last-second join may race it: scripts run one at a time, the join refuses
-- at or after the deadline and this script does nothing before it).
-- Virtual completion: if the campaign allows it and enough real members joined, the
-- group completes with the members it has and its unused units go back to the stock.
-- Otherwise the group fails: all N units go back to the stock, every member gets their
-- per-user allowance back, and group.failed is appended (orders are cancelled from it).
-- A cancelled campaign's open groups fail at once (cancel.lua made them due), never
-- virtually complete, and are marked why = 'cancelled' (a join then says so).
--
-- KEYS[1] meta  KEYS[2] stock  KEYS[3] users  KEYS[4] outbox  KEYS[5] deadlines
-- KEYS[6] group hash  KEYS[7] group members
-- ARGV[1] group id
-- Returns {"virtual", members, opened_ms, returned} | {"failed", members, opened_ms,
-- returned} | {"not_due"} | {"settled", state} | {"unknown"}.

local g = redis.call('HMGET', KEYS[6], 'state', 'deadline', 'size', 'n', 'opened')
if not g[1] then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {'unknown'}
end
if g[1] ~= 'open' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {'settled', g[1]}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HMGET', KEYS[1], 'virtual', 'min_real', 'closed')
local cancelled = meta[3] == 'cancelled'
if now < tonumber(g[2]) and not cancelled then
  return {'not_due'}
end

local size = tonumber(g[3])
local n = tonumber(g[4])
local members = redis.call('ZRANGE', KEYS[7], 0, -1)
redis.call('ZREM', KEYS[5], ARGV[1])

if not cancelled and meta[1] == '1' and n >= tonumber(meta[2]) then
  local returned = size - n
  if returned > 0 then
    redis.call('INCRBY', KEYS[2], returned)
  end
  redis.call('HSET', KEYS[6], 'state', 'completed', 'how', 'virtual', 'completed', now)
  redis.call('XADD', KEYS[4], '*', 'type', 'group.completed', 'gid', ARGV[1], 'how', 'virtual',
    'members', cjson.encode(members), 'at', tostring(now), 'opened', g[5], 'deadline', g[2],
    'size', size, 'returned', returned)
  return {'virtual', n, g[5], returned}
end

redis.call('INCRBY', KEYS[2], size)
for _, user in ipairs(members) do
  if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
  end
end
redis.call('HSET', KEYS[6], 'state', 'failed', 'failed', now)
if cancelled then
  redis.call('HSET', KEYS[6], 'why', 'cancelled')
end
redis.call('XADD', KEYS[4], '*', 'type', 'group.failed', 'gid', ARGV[1],
  'members', cjson.encode(members), 'at', tostring(now), 'opened', g[5], 'deadline', g[2],
  'size', size, 'returned', size)
return {'failed', n, g[5], size}
