-- wrk script of the login benchmark: POST /api/auth/login, a fresh single-use code per
-- request, as wx.login() gives one per login. Usage:
--   wrk -s login.lua URL -- MODE RUN POOL ROUND
-- MODE "new": every code is a shopper never seen (a user is created, an event queued);
-- "returning": codes cycle over POOL shoppers who logged in before (a last_login_at update).

local threads = 0
local n = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  mode, run, pool, round = args[1], args[2], tonumber(args[3]), args[4]
end

function request()
  n = n + 1
  local who
  if mode == "new" then
    who = run .. "-n" .. round .. "-" .. tid .. "-" .. n
  else
    who = run .. "-r" .. ((n * 7919 + tid) % pool)
  end
  -- Codes are single use: the round makes them unique across wrk runs.
  local code = who .. "." .. round .. "x" .. tid .. "x" .. n
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"code":"' .. code .. '"}')
end
