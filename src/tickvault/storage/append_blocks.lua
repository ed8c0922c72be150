-- Append trade blocks to a stream with entry ids derived from event time, and
-- advance bridge cursors in the same atomic step.
-- KEYS[1] stream, KEYS[2] meta hash, KEYS[3] late-block sorted set,
-- KEYS[4] cursor hash (publisher:topic -> last sequence number stored)
-- ARGV: n_cursors, then n_cursors pairs (field, seq), then repeated
--       (first_ms, last_ms, n_trades, trading_day, max_trade_id, block_bytes)
-- Returns the entry ids, in order.
--
-- The meta hash keeps, per trading day, the largest trade_id stored (field
-- `tid:<day>`), so a writer can tell cheaply that a batch cannot repeat a stored
-- trade id (and check the stored trades only when it might).
--
-- The watermark `wm` is the largest event ms of any in-order block. A block
-- whose first trade is at or after it gets id <first_ms>-<seq>; a block that
-- starts before it (late, out-of-order) gets id <wm>-<seq> and is indexed in
-- KEYS[3] (member "<id>@<first_ms>", score last_ms) so range reads find it by
-- its true time. A late entry also carries the field `l` = its first ms.
-- A cursor only moves forward, so two writers can never move it back.
local stream, meta, late, cursor = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local n_cursors = tonumber(ARGV[1])
for i = 2, 2 * n_cursors, 2 do
  local old = tonumber(redis.call('HGET', cursor, ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > old then
    redis.call('HSET', cursor, ARGV[i], ARGV[i + 1])
  end
end
local first_block = 2 + 2 * n_cursors
if first_block > #ARGV then
  return {}
end
local wm_s = redis.call('HGET', meta, 'wm')
if not wm_s then
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top > 0 then
    wm_s = string.match(top[1][1], '^(%d+)-')
  else
    wm_s = '0'
  end
end
local wm = tonumber(wm_s)
local ids = {}
local trades = 0
for i = first_block, #ARGV, 6 do
  local first_s, last_s, block = ARGV[i], ARGV[i + 1], ARGV[i + 5]
  local id
  if tonumber(first_s) >= wm then
    id = redis.call('XADD', stream, first_s .. '-*', 'b', block)
    wm, wm_s = tonumber(last_s), last_s
  else
    id = redis.call('XADD', stream, wm_s .. '-*', 'b', block, 'l', first_s)
    redis.call('ZADD', late, last_s, id .. '@' .. first_s)
  end
  trades = trades + tonumber(ARGV[i + 2])
  local tid_field = 'tid:' .. ARGV[i + 3]
  local old_tid = tonumber(redis.call('HGET', meta, tid_field) or '-1')
  if tonumber(ARGV[i + 4]) > old_tid then
    redis.call('HSET', meta, tid_field, ARGV[i + 4])
  end
  redis.call('HINCRBY', meta, 'n:' .. ARGV[i + 3], ARGV[i + 2])
  ids[#ids + 1] = id
end
redis.call('HSET', meta, 'wm', wm_s)
redis.call('HINCRBY', meta, 'trades', trades)
return ids
