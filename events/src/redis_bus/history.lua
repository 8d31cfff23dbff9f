-- Reads a channel's history after an offset (docs/events.md), consistently with the
-- publishing step: epoch, newest offset and events come from one atomic snapshot.
--
-- KEYS[1]  events:{<channel>}:epoch
-- KEYS[2]  events:{<channel>}:offset
-- KEYS[3]  events:{<channel>}:history
-- ARGV[1]  a fresh epoch, set only when the channel has none, so the epoch a reader sees
--          before the first event is the one that event will carry
-- ARGV[2]  history_len_max: only the newest this many events count as history
-- ARGV[3]  after_offset: return the events with a greater offset
--
-- Returns {epoch, latest_offset, oldest_offset, envelope...}, envelopes oldest first.
local new_epoch = ARGV[1]
local history_len_max = tonumber(ARGV[2])
local after_offset = tonumber(ARGV[3])
if not string.match(new_epoch, '^[%w_%.%-]+$') then
  return redis.error_reply('ERR invalid epoch')
end
if not history_len_max or history_len_max < 1 or not after_offset then
  return redis.error_reply('ERR history_len_max and after_offset must be integers')
end

local epoch = redis.call('GET', KEYS[1])
if not epoch or not redis.call('GET', KEYS[2]) then
  epoch = new_epoch
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
local latest = tonumber(redis.call('GET', KEYS[2]))

-- MAXLEN ~ may keep a few more entries than history_len_max; they are not part of history.
local oldest = 0
local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #head > 0 then
  local head_offset = tonumber(string.match(head[1][1], '^(%d+)-'))
  oldest = math.max(head_offset, latest - history_len_max + 1)
end

local result = {epoch, string.format('%d', latest), string.format('%d', oldest)}
local start = math.max(after_offset + 1, oldest)
if oldest > 0 and start <= latest then
  local entries = redis.call('XRANGE', KEYS[3], string.format('%d-0', start), '+',
    'COUNT', history_len_max)
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for index = 1, #fields, 2 do
      if fields[index] == 'event' then
        result[#result + 1] = fields[index + 1]
      end
    end
  end
end
return result
