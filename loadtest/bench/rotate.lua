-- wrk script of the benchmark: POST a JSON body with a bearer token rotating over the
-- pre-minted tokens of a file (one a line), so the requests are those of many shoppers.
-- Usage: wrk -s rotate.lua URL -- TOKENS_FILE [BODY]
-- Every target of the benchmark (hello, reserve, naive) gets the same requests; a coupon
-- claim the same but for its body ('{}': a claim has no fields, and unknown ones are
-- refused).

local tokens = {}
local n = 0
local i = 0
local body = '{"quantity": 1}'
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("first", threads)
end

function init(args)
  if args[2] then
    body = args[2]
  end
  for line in io.lines(args[1]) do
    n = n + 1
    tokens[n] = "Bearer " .. line
  end
  -- Threads start far apart in the list, so no two press as the same shopper at once.
  i = math.floor(n * ((first or 1) - 1) / 4)
end

function request()
  i = i % n + 1
  return wrk.format("POST", nil, {
    ["Authorization"] = tokens[i],
    ["Content-Type"] = "application/json",
  }, body)
end
