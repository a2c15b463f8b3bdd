-- Join a group, atomically. Checks: the caller's Idempotency-Key record for this group (a
-- retry is answered from it and changes nothing; docs/idempotency.md), group known, not
-- completed or failed, not past its deadline (even if the sweeper has not settled it
-- yet), caller not already a member, a slot free, campaign not cancelled (cancel.lua;
-- a campaign ended early still lets its open groups fill), per-user limit. The group's units were
-- taken from the stock when it opened, so a free slot IS available stock. The join that
-- fills the last slot flips the group to completed and appends group.completed in the
-- same step: scripts run one at a time, so exactly one join can see the last slot free,
-- and exactly once. With a key, every outcome but not_found is recorded in the same step:
-- none of them can change for this user and group later.
--
-- KEYS[1] meta  KEYS[2] users  KEYS[3] outbox  KEYS[4] deadlines  KEYS[5] group hash
-- KEYS[6] group members  KEYS[7] idempotency records hash
-- ARGV[1] user id  ARGV[2] group id  ARGV[3] the key's record field ('' without a key)
-- ARGV[4] ms records are kept after the campaign's last group could close
-- Returns {"joined", position, size, deadline_ms} | {"completed", position, size, opened_ms}
-- | {refusal}; replayed: {"replayed", "joined" or "completed", position, size} or
-- {"replayed", refusal}.

local field = ARGV[3]
if field ~= '' then
  local seen = redis.call('HGET', KEYS[7], field)
  if seen then
    local first = cjson.decode(seen)
    if first.p then
      return {'replayed', first.o, first.p, first.s}
    end
    return {'replayed', first.o}
  end
end

local function record(first)
  if field == '' then
    return {first.o}
  end
  local meta = redis.call('HMGET', KEYS[1], 'ends_ms', 'window_ms')
  -- Without the campaign's end there is no expiry to give the record: keep none.
  if meta[1] then
    redis.call('HSET', KEYS[7], field, cjson.encode(first))
    redis.call('PEXPIREAT', KEYS[7], tonumber(meta[1]) + tonumber(meta[2]) + tonumber(ARGV[4]))
  end
  return {first.o}
end

local g = redis.call('HMGET', KEYS[5], 'state', 'deadline', 'size', 'n', 'opened', 'how', 'why')
if not g[1] then
  return {'not_found'}
end
-- A group filled to N is "full"; one completed virtually at expiry has free slots left
-- but is closed all the same.
if g[1] == 'completed' then
  if g[6] == 'full' then
    return record({o = 'full'})
  end
  return record({o = 'completed_already'})
end
if g[1] == 'failed' then
  if g[7] == 'cancelled' then
    return record({o = 'cancelled'})
  end
  return record({o = 'expired'})
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(g[2])
if now >= deadline then
  return record({o = 'expired'})
end

local user = ARGV[1]
if redis.call('ZSCORE', KEYS[6], user) then
  return record({o = 'already_member'})
end
local size = tonumber(g[3])
local n = tonumber(g[4])
if n >= size then
  return record({o = 'full'})
end

local meta = redis.call('HMGET', KEYS[1], 'limit', 'price', 'sku', 'pay_ms', 'closed')
if meta[5] == 'cancelled' then
  return record({o = 'cancelled'})
end
local held = tonumber(redis.call('HGET', KEYS[2], user) or '0')
if held >= tonumber(meta[1]) then
  return record({o = 'limit_reached'})
end

n = n + 1
redis.call('ZADD', KEYS[6], n, user)
redis.call('HINCRBY', KEYS[2], user, 1)
redis.call('HSET', KEYS[5], 'n', n)
redis.call('XADD', KEYS[3], '*', 'type', 'group.joined', 'gid', ARGV[2], 'user', user,
  'pos', n, 'at', tostring(now), 'opened', g[5], 'deadline', g[2], 'size', size,
  'price', meta[2], 'sku', meta[3], 'pay_ms', meta[4])
if n < size then
  record({o = 'joined', p = n, s = size})
  return {'joined', n, size, g[2]}
end

redis.call('HSET', KEYS[5], 'state', 'completed', 'how', 'full', 'completed', now)
redis.call('ZREM', KEYS[4], ARGV[2])
local members = redis.call('ZRANGE', KEYS[6], 0, -1)
redis.call('XADD', KEYS[3], '*', 'type', 'group.completed', 'gid', ARGV[2], 'how', 'full',
  'members', cjson.encode(members), 'at', tostring(now), 'opened', g[5], 'deadline', g[2],
  'size', size, 'returned', 0)
record({o = 'completed', p = n, s = size})
return {'completed', n, size, g[5]}
