-- GCRA over one or more limits at once, all or nothing: the rate limits every gateway instance
-- shares through Redis (docs/security.md, "Rate limits"). Run atomically by Redis, with Redis's
-- own clock, so instances agree on time and no two requests can both take the last place.
--
-- KEYS[i]: limit i's state, its theoretical arrival time (TAT) in microseconds of Redis TIME.
-- ARGV[2i-1]: limit i's emission interval in microseconds (1 / rate).
-- ARGV[2i]: limit i's burst.
--
-- Returns three integers per limit: allowed (1 or 0), remaining places, and microseconds until
-- the limit is whole again (allowed) or until the next request may pass (refused). A request
-- is charged to every limit, or to none when any refuses. Each key expires once its limit is
-- whole again, so Redis holds only the clients seen recently.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local reply = {}
local next_tats = {}
local all_allowed = true
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  -- How far ahead of now the TAT may run: burst - 1 requests beyond the current one.
  local tolerance = interval * (burst - 1)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local wait = tat - tolerance - now
  if wait > 0 then
    all_allowed = false
    reply[3 * i - 2] = 0
    reply[3 * i - 1] = 0
    reply[3 * i] = wait
  else
    local next_tat = tat + interval
    next_tats[i] = next_tat
    reply[3 * i - 2] = 1
    reply[3 * i - 1] = math.floor((now + tolerance + interval - next_tat) / interval)
    reply[3 * i] = next_tat - now
  end
end
if all_allowed then
  for i, key in ipairs(KEYS) do
    -- '%.0f': Lua 5.1 would print a number this large in exponent form and lose digits.
    local ttl_ms = math.ceil((next_tats[i] - now) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', next_tats[i]), 'PX', ttl_ms)
  end
end
return reply
