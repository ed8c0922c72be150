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
-- Ids, watermark and late index: block_append.lua (loaded before this script).
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
local wm_s = stream_watermark(stream, meta)
local ids = {}
local trades = 0
for i = first_block, #ARGV, 6 do
  local id
  id, wm_s = append_block(stream, meta, late, wm_s, ARGV[i], ARGV[i + 1], ARGV[i + 5],
                         ARGV[i + 3], ARGV[i + 4])
  trades = trades + tonumber(ARGV[i + 2])
  redis.call('HINCRBY', meta, 'n:' .. ARGV[i + 3], ARGV[i + 2])
  ids[#ids + 1] = id
end
redis.call('HSET', meta, 'wm', wm_s)
redis.call('HINCRBY', meta, 'trades', trades)
return ids
