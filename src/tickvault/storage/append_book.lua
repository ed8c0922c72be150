-- Append offer-book update entries and advance bridge cursors in one atomic step.
-- KEYS[1] book stream, KEYS[2] cursor hash (publisher:topic -> last sequence stored)
-- ARGV: n_cursors, then n_cursors pairs (field, seq), then repeated (ms, field, payload)
-- An entry's id is <ms>-<seq>, with ms raised to the stream's last ms when an
-- update arrives out of order, so ids never go back. Returns the ids.
-- A call whose first cursor is already at its new value was applied before (a retry
-- after a lost reply): it changes nothing, so an update is never stored twice.
local stream, cursor = KEYS[1], KEYS[2]
local n_cursors = tonumber(ARGV[1])
if n_cursors > 0 then
  local seen = tonumber(redis.call('HGET', cursor, ARGV[2]) or '0')
  if seen >= tonumber(ARGV[3]) then
    return {}
  end
end
for i = 2, 2 * n_cursors, 2 do
  local old = tonumber(redis.call('HGET', cursor, ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > old then
    redis.call('HSET', cursor, ARGV[i], ARGV[i + 1])
  end
end
local first = 2 + 2 * n_cursors
if first > #ARGV then
  return {}
end
local last = 0
local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if #top > 0 then
  last = tonumber(string.match(top[1][1], '^(%d+)-'))
end
local ids = {}
for i = first, #ARGV, 3 do
  local ms = tonumber(ARGV[i])
  if ms < last then
    ms = last
  end
  last = ms
  ids[#ids + 1] = redis.call('XADD', stream, string.format('%d', ms) .. '-*', ARGV[i + 1], ARGV[i + 2])
end
return ids
