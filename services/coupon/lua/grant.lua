-- 下单返券: grant one coupon of a template for one (paid order, rule), atomically and at
-- most once. The first outcome of a pair is recorded in the grants hash in the same step
-- as the stock it takes, so a redelivered order.paid (or a consumer that died between
-- this script and its PostgreSQL commit) is answered from the record and takes nothing
-- twice. Refusals are recorded as "exhausted" too: a template that ran out, was ended by
-- its merchant or whose fixed validity is over never grants that pair later (a restock
-- must not reach back to old orders). Grants ignore the claim window and the per-user
-- claim limit (docs/coupons.md, "Templates"); they share the stock with claims.
--
-- KEYS[1] meta  KEYS[2] stock  KEYS[3] outbox  KEYS[4] grants
-- ARGV[1] order id  ARGV[2] rule id  ARGV[3] user id  ARGV[4] coupon id (chosen by the
-- caller, used only when this call grants)
-- Returns {"granted", coupon id, from_ms, until_ms, at_ms} | {"exhausted"}
-- | {"duplicate", first outcome (a coupon id or "exhausted")} | {"unknown"} (the
-- template is not in Redis: nothing recorded).

local field = ARGV[1] .. ':' .. ARGV[2]
local first = redis.call('HGET', KEYS[4], field)
if first then
  return {'duplicate', first}
end

local meta = redis.call('HMGET', KEYS[1], 'validity', 'closed', 'from_ms', 'until_ms', 'days')
if not meta[1] then
  return {'unknown'}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function exhausted()
  redis.call('HSET', KEYS[4], field, 'exhausted')
  return {'exhausted'}
end

if meta[2] == 'ended' then
  return exhausted()
end
local from, till
if meta[1] == 'fixed' then
  from = tonumber(meta[3])
  till = tonumber(meta[4])
  if now >= till then
    return exhausted()
  end
else
  from = now
  till = now + tonumber(meta[5]) * 86400000
end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock <= 0 then
  return exhausted()
end

local coupon = ARGV[4]
redis.call('DECR', KEYS[2])
redis.call('HSET', KEYS[4], field, coupon)
redis.call('XADD', KEYS[3], '*',
  'type', 'coupon.granted', 'cid', coupon, 'user', ARGV[3],
  'from', tostring(from), 'until', tostring(till), 'at', tostring(now),
  'order', ARGV[1], 'rule', ARGV[2])
return {'granted', coupon, tostring(from), tostring(till), tostring(now)}
