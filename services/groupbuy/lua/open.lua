-- Open a group with the caller as leader, atomically (docs/groupbuy.md).
-- Checks: the caller's Idempotency-Key record (a retry is answered from it and changes
-- nothing; docs/idempotency.md), campaign known, not cancelled (a merchant's end moves
-- ends_ms to that moment), campaign window, per-user limit (BEFORE
-- taking stock), then stock for the WHOLE group: opening takes all N units at once, so
-- joins never touch the campaign stock and the campaign can never be oversold, whatever
-- the number of concurrent groups. Writes the group, its first member and the
-- group.opened outbox entry in the same step: "group exists" and "event will be
-- published" are one fact. With a key, a final outcome (opened, limit_reached, sold_out)
-- is recorded in the same step too, so two opens with one key never open two groups.
--
-- KEYS[1] meta  KEYS[2] stock  KEYS[3] users  KEYS[4] outbox  KEYS[5] deadlines
-- KEYS[6] group hash  KEYS[7] group members  KEYS[8] idempotency records hash
-- ARGV[1] user id  ARGV[2] group id  ARGV[3] the key's record field ('' without a key)
-- ARGV[4] ms records are kept after the campaign's last group could close
-- Returns {"ok", deadline_ms, stock_left} or {refusal};
-- replayed: {"replayed", "ok", deadline_ms, group id} or {"replayed", refusal}.

local field = ARGV[3]
if field ~= '' then
  local seen = redis.call('HGET', KEYS[8], field)
  if seen then
    local first = cjson.decode(seen)
    if first.o == 'ok' then
      return {'replayed', 'ok', first.d, first.g}
    end
    return {'replayed', first.o}
  end
end

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'size', 'window_ms', 'limit',
  'price', 'sku', 'pay_ms', 'closed')
if not meta[1] then
  return {'not_found'}
end
if meta[9] == 'cancelled' then
  return {'cancelled'}
end

local function record(first)
  if field ~= '' then
    redis.call('HSET', KEYS[8], field, cjson.encode(first))
    -- A group opened at the campaign's last moment stays joinable for its whole window.
    redis.call('PEXPIREAT', KEYS[8], tonumber(meta[2]) + tonumber(meta[4]) + tonumber(ARGV[4]))
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then
  return {'not_started'}
end
if now >= tonumber(meta[2]) then
  return {'ended'}
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  return {'duplicate_group'}
end

local user = ARGV[1]
local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if held >= tonumber(meta[5]) then
  record({o = 'limit_reached'})
  return {'limit_reached'}
end

local size = tonumber(meta[3])
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock < size then
  record({o = 'sold_out'})
  return {'sold_out'}
end

redis.call('DECRBY', KEYS[2], size)
redis.call('HINCRBY', KEYS[3], user, 1)
local deadline = now + tonumber(meta[4])
redis.call('HSET', KEYS[6], 'state', 'open', 'leader', user, 'size', size, 'n', 1,
  'opened', now, 'deadline', deadline)
redis.call('ZADD', KEYS[7], 1, user)
redis.call('ZADD', KEYS[5], deadline, ARGV[2])
redis.call('XADD', KEYS[4], '*', 'type', 'group.opened', 'gid', ARGV[2], 'user', user,
  'pos', 1, 'at', tostring(now), 'opened', tostring(now), 'deadline', tostring(deadline),
  'size', size, 'price', meta[6], 'sku', meta[7], 'pay_ms', meta[8])
record({o = 'ok', d = tostring(deadline), g = ARGV[2]})
return {'ok', tostring(deadline), tostring(stock - size)}
