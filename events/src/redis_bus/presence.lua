-- Presence on a collaboration channel (docs/events.md#presence). Runs after the text of
-- publish.lua wrapped as `local function publish_event(KEYS, ARGV)` (see redis_bus.rs), so every
-- change is announced through the one publishing step, in the same atomic step as the change.
--
-- KEYS[1..3]  events:{<channel>}:epoch, :offset, :history (as for publish.lua)
-- KEYS[4]     events:{<channel>}:presence          sorted set: connection -> expiry (ms, Redis TIME)
-- KEYS[5]     events:{<channel>}:presence:members  hash: connection -> member JSON
-- ARGV[1]     the channel name
-- ARGV[2]     a fresh epoch (used only if the channel has none)
-- ARGV[3]     history_len_max
-- ARGV[4]     the operation: join | leave | heartbeat | state
-- ARGV[5]     ttl_ms: entries written now expire this long from now
-- ARGV[6..]   join: connection, member JSON; leave: connection;
--             heartbeat: connection, member JSON, connection, member JSON, ...
--
-- Every operation first sweeps expired entries (at most 1,000 per call), announcing each with an
-- `expire` event. Returns {epoch, newest offset, member JSON...} for the members not expired.
local channel, new_epoch, history_len_max = ARGV[1], ARGV[2], ARGV[3]
local op, ttl_ms = ARGV[4], tonumber(ARGV[5])
if KEYS[4] ~= 'events:{' .. channel .. '}:presence'
    or KEYS[5] ~= 'events:{' .. channel .. '}:presence:members' then
  return redis.error_reply('ERR presence keys must be events:{<channel>}:presence and :presence:members')
end
if not ttl_ms or ttl_ms < 1 then
  return redis.error_reply('ERR ttl_ms must be a positive integer')
end
-- Check everything the announcements need before the first write: a Redis script that fails
-- half way keeps its writes, and a change must never happen unannounced.
if not string.match(channel, '^[%w_%.:%-]+$') or not string.match(new_epoch, '^[%w_%.%-]+$')
    or not tonumber(history_len_max) or tonumber(history_len_max) < 1 then
  return redis.error_reply('ERR invalid channel, epoch or history_len_max')
end
-- A member is {"connection":...,"user_id":...,"username":...}, its connection the one named.
local function is_member(connection, member)
  local ok, decoded = pcall(cjson.decode, member or '')
  return ok and type(decoded) == 'table' and decoded.connection == connection
    and type(decoded.user_id) == 'string' and type(decoded.username) == 'string'
end
if op == 'join' and not is_member(ARGV[6], ARGV[7]) then
  return redis.error_reply('ERR member must be {"connection","user_id","username"} for its connection')
end
if op == 'heartbeat' then
  for index = 6, #ARGV, 2 do
    if not is_member(ARGV[index], ARGV[index + 1]) then
      return redis.error_reply('ERR member must be {"connection","user_id","username"} for its connection')
    end
  end
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local now = string.format('%d', now_ms)
local expiry = string.format('%d', now_ms + ttl_ms)

-- Announces a change through the publishing step (its checks were all made above).
local function announce(action, member)
  local data = '{"type":"presence","action":"' .. action .. '","member":' .. member .. '}'
  local envelope = publish_event({KEYS[1], KEYS[2], KEYS[3]}, {channel, new_epoch, history_len_max, data, ''})
  if type(envelope) == 'table' and envelope.err then
    error(envelope.err)
  end
end

-- Removes a connection's entry, announcing `action` if it was present.
local function remove(connection, action)
  local member = redis.call('HGET', KEYS[5], connection)
  redis.call('ZREM', KEYS[4], connection)
  redis.call('HDEL', KEYS[5], connection)
  if member then
    announce(action, member)
  end
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)
for _, connection in ipairs(expired) do
  remove(connection, 'expire')
end

if op == 'join' then
  local connection, member = ARGV[6], ARGV[7]
  redis.call('ZADD', KEYS[4], expiry, connection)
  redis.call('HSET', KEYS[5], connection, member)
  announce('join', member)
elseif op == 'leave' then
  remove(ARGV[6], 'leave')
elseif op == 'heartbeat' then
  for index = 6, #ARGV, 2 do
    local connection, member = ARGV[index], ARGV[index + 1]
      if redis.call('ZADD', KEYS[4], expiry, connection) == 1 then
      -- Gone (expired while this instance was cut off, or lost): back, and announced.
      redis.call('HSET', KEYS[5], connection, member)
      announce('join', member)
    end
  end
elseif op ~= 'state' then
  return redis.error_reply('ERR unknown presence operation')
end

local result = {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or '0'}
local present = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, '+inf')
for _, connection in ipairs(present) do
  local member = redis.call('HGET', KEYS[5], connection)
  if member then
    result[#result + 1] = member
  end
end
return result
