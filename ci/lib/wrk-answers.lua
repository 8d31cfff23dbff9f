-- wrk script: counts the answers whose status is not 2xx (wrk's own count leaves out 1xx and 3xx)
-- and prints "non-2xx answers: N" at the end, for ci/lib/wrk-answers.sh to check.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("non_2xx")
  end
  io.write(string.format("non-2xx answers: %d\n", total))
end
