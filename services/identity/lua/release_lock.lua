-- Delete the lock KEYS[1] only if this holder (ARGV[1]) still owns it: a holder whose lock
-- expired must not release the next holder's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
