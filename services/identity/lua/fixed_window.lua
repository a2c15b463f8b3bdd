-- A fixed-window counter: one more hit for KEYS[1] in a window of ARGV[1] ms.
-- Returns {hits in this window, ms until the window ends}.
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- A key left without expiry (a crash between INCR and PEXPIRE cannot happen inside a
  -- script, but a manual SET could): give it one.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
