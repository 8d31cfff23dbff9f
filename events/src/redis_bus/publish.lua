-- The one publishing step of the event contract (docs/events.md): assign the channel's next
-- offset, append the event to the channel's bounded history and publish it to live
-- subscribers, in one atomic step.
--
-- KEYS[1]  events:{<channel>}:epoch    the channel's current epoch
-- KEYS[2]  events:{<channel>}:offset   the channel's newest offset in that epoch
-- KEYS[3]  events:{<channel>}:history  the bounded history: a Stream, entry ID <offset>-0,
--                                      fields offset and event
-- ARGV[1]  the channel name, kind:id
-- ARGV[2]  a fresh epoch, used only when the channel has none (its history was lost)
-- ARGV[3]  history_len_max: how many events the history keeps (trimmed with MAXLEN ~)
-- ARGV[4]  data: the payload, serialised JSON, stored and published verbatim
-- ARGV[5]  audience: a serialised JSON object {"users":[...],"roles":[...]}, or "" for all
--
-- Returns the envelope as published on the pub/sub channel events:{<channel>}.
local channel, new_epoch = ARGV[1], ARGV[2]
local history_len_max = tonumber(ARGV[3])
local data, audience = ARGV[4], ARGV[5]

-- Channel names and epochs are made of safe characters, so the envelope can be assembled by
-- concatenation without escaping; the payload is never re-encoded, so numbers stay verbatim.
if not string.match(channel, '^[%w_%.:%-]+$') then
  return redis.error_reply('ERR invalid channel name')
end
local prefix = 'events:{' .. channel .. '}'
if KEYS[1] ~= prefix .. ':epoch' or KEYS[2] ~= prefix .. ':offset'
    or KEYS[3] ~= prefix .. ':history' then
  return redis.error_reply('ERR keys must be ' .. prefix .. ':epoch, :offset and :history')
end
if not string.match(new_epoch, '^[%w_%.%-]+$') then
  return redis.error_reply('ERR invalid epoch')
end
if not history_len_max or history_len_max < 1 then
  return redis.error_reply('ERR history_len_max must be a positive integer')
end
if not pcall(cjson.decode, data) then
  return redis.error_reply('ERR data is not JSON')
end
if audience ~= '' then
  local ok, decoded = pcall(cjson.decode, audience)
  if not ok or type(decoded) ~= 'table' then
    return redis.error_reply('ERR audience is not a JSON object')
  end
end

local epoch = redis.call('GET', KEYS[1])
if not epoch or not redis.call('GET', KEYS[2]) then
  -- No epoch: this channel never had events or its history was lost. Start a new epoch whose
  -- offsets begin at 1, and drop whatever is left of the old history.
  epoch = new_epoch
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
local offset = string.format('%d', redis.call('INCR', KEYS[2]))

-- Exactly the serde form of events::Event: channel, offset, epoch, [audience], data.
local envelope = '{"channel":"' .. channel .. '","offset":' .. offset .. ',"epoch":"' .. epoch .. '"'
if audience ~= '' then
  envelope = envelope .. ',"audience":' .. audience
end
envelope = envelope .. ',"data":' .. data .. '}'

redis.call('XADD', KEYS[3], 'MAXLEN', '~', history_len_max, offset .. '-0',
  'offset', offset, 'event', envelope)
redis.call('PUBLISH', prefix, envelope)
return envelope
