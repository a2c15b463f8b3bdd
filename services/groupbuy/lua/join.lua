-- Join a group, atomically. Checks: group known, not completed or failed, not past its
-- deadline (even if the sweeper has not settled it yet), caller not already a member,
-- a slot free, per-user limit. The group's units were taken from the stock when it
-- opened, so a free slot IS available stock. The join that fills the last slot flips
-- the group to completed and appends group.completed in the same step: scripts run one
-- at a time, so exactly one join can see the last slot free, and exactly once.
--
-- KEYS[1] meta  KEYS[2] users  KEYS[3] outbox  KEYS[4] deadlines  KEYS[5] group hash
-- KEYS[6] group members
-- ARGV[1] user id  ARGV[2] group id
-- Returns {"joined", position, size, deadline_ms} | {"completed", position, size, opened_ms}
-- | {refusal}.

local g = redis.call('HMGET', KEYS[5], 'state', 'deadline', 'size', 'n', 'opened', 'how')
if not g[1] then
  return {'not_found'}
end
-- A group filled to N is "full"; one completed virtually at expiry has free slots left
-- but is closed all the same.
if g[1] == 'completed' then
  if g[6] == 'full' then
    return {'full'}
  end
  return {'completed_already'}
end
if g[1] == 'failed' then
  return {'expired'}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(g[2])
if now >= deadline then
  return {'expired'}
end

local user = ARGV[1]
if redis.call('ZSCORE', KEYS[6], user) then
  return {'already_member'}
end
local size = tonumber(g[3])
local n = tonumber(g[4])
if n >= size then
  return {'full'}
end

local meta = redis.call('HMGET', KEYS[1], 'limit', 'price', 'sku', 'pay_ms')
local held = tonumber(redis.call('HGET', KEYS[2], user) or '0')
if held >= tonumber(meta[1]) then
  return {'limit_reached'}
end

n = n + 1
redis.call('ZADD', KEYS[6], n, user)
redis.call('HINCRBY', KEYS[2], user, 1)
redis.call('HSET', KEYS[5], 'n', n)
redis.call('XADD', KEYS[3], '*', 'type', 'group.joined', 'gid', ARGV[2], 'user', user,
  'pos', n, 'at', tostring(now), 'opened', g[5], 'deadline', g[2], 'size', size,
  'price', meta[2], 'sku', meta[3], 'pay_ms', meta[4])
if n < size then
  return {'joined', n, size, g[2]}
end

redis.call('HSET', KEYS[5], 'state', 'completed', 'how', 'full', 'completed', now)
redis.call('ZREM', KEYS[4], ARGV[2])
local members = redis.call('ZRANGE', KEYS[6], 0, -1)
redis.call('XADD', KEYS[3], '*', 'type', 'group.completed', 'gid', ARGV[2], 'how', 'full',
  'members', cjson.encode(members), 'at', tostring(now), 'opened', g[5], 'deadline', g[2],
  'size', size, 'returned', 0)
return {'completed', n, size, g[5]}
