-- Count the entries of stream KEYS[1] between ARGV[1] and ARGV[2] (XRANGE bounds),
-- at most ARGV[3] of them, without sending them: returns {count, id of the last one}.
-- A dry-run trim pages through a range with it.
local page = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local n = #page
if n == 0 then
  return {0, ''}
end
return {n, page[n][1]}
