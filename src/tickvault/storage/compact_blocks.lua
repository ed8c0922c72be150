-- One compaction swap: remove realtime entries and append the blocks that hold exactly
-- their records to the compacted stream, atomically (storage/compaction.py).
-- KEYS[1] realtime stream, KEYS[2] its meta hash, KEYS[3] its late-block sorted set,
-- KEYS[4] compacted stream, KEYS[5] its meta hash, KEYS[6] its late-block sorted set
-- ARGV: expected gen, first id, last id, min id (the three '' for none: the entries
--       from the stream's first entry, which must be <first id>, to <last id>, go with
--       XTRIM MINID <min id>), n_ids, the n_ids other realtime entry ids (XDEL),
--       n_members, the n_members late-index members of the entries removed, n_days,
--       then n_days pairs (trading_day, records), then repeated
--       (first_ms, last_ms, n_trades, trading_day, max_trade_id, block_bytes)
-- Returns {1, the new gen, entry ids of the new blocks...}, or {0, the gen found}
-- when the compacted meta's `gen` is not the expected one (or the stream does not
-- start at <first id> or lacks <last id>: its keys were deleted and written again),
-- and nothing is changed.
--
-- `gen` goes up by one with every swap and every trim of the symbol (the only ways
-- tickvault deletes trade entries): a compactor that read the stream at gen G
-- knows that every entry it read is still there while gen is G (appends only add
-- entries, at ids above every existing one). So the entries go without a check
-- each: those before <min id> (the compactor's entries are then the whole start of
-- the stream) with one XTRIM MINID, which frees whole stream nodes, the others with
-- XDEL (each costs a few microseconds: the compactor bounds how many).
--
-- The new blocks are appended by the rules of block_append.lua (ids follow event
-- time; a block that starts before the compacted stream's watermark is a late entry,
-- field `l`, indexed in KEYS[6]). The record counters move from the realtime meta to
-- the compacted meta (`trades`, `n:<day>`); a reader whose read takes two round
-- trips reads `gen` in both and reads again when it moved.
local rt, rt_meta, rt_late = KEYS[1], KEYS[2], KEYS[3]
local cs, cs_meta, cs_late = KEYS[4], KEYS[5], KEYS[6]
local gen = redis.call('HGET', cs_meta, 'gen') or '0'
if gen ~= ARGV[1] then
  return {0, gen}
end
if ARGV[2] ~= '' then
  local head = redis.call('XRANGE', rt, '-', '+', 'COUNT', 1)
  if #head == 0 or head[1][1] ~= ARGV[2] or #redis.call('XRANGE', rt, ARGV[3], ARGV[3]) == 0 then
    return {0, gen}
  end
  redis.call('XTRIM', rt, 'MINID', ARGV[4])
end
local n_ids = tonumber(ARGV[5])
for i = 6, 5 + n_ids, 1000 do
  redis.call('XDEL', rt, unpack(ARGV, i, math.min(i + 999, 5 + n_ids)))
end
local at = 6 + n_ids
local n_members = tonumber(ARGV[at])
for i = at + 1, at + n_members, 1000 do
  redis.call('ZREM', rt_late, unpack(ARGV, i, math.min(i + 999, at + n_members)))
end
at = at + n_members + 1
local n_days = tonumber(ARGV[at])
local moved = 0
for i = at + 1, at + 2 * n_days, 2 do
  redis.call('HINCRBY', rt_meta, 'n:' .. ARGV[i], -tonumber(ARGV[i + 1]))
  redis.call('HINCRBY', cs_meta, 'n:' .. ARGV[i], ARGV[i + 1])
  moved = moved + tonumber(ARGV[i + 1])
end
redis.call('HINCRBY', rt_meta, 'trades', -moved)
redis.call('HINCRBY', cs_meta, 'trades', moved)
at = at + 2 * n_days + 1
local wm_s = stream_watermark(cs, cs_meta)
local ids = {1, redis.call('HINCRBY', cs_meta, 'gen', 1)}
for i = at, #ARGV, 6 do
  local id
  id, wm_s = append_block(cs, cs_meta, cs_late, wm_s, ARGV[i], ARGV[i + 1], ARGV[i + 5],
                         ARGV[i + 3], ARGV[i + 4])
  ids[#ids + 1] = id
end
redis.call('HSET', cs_meta, 'wm', wm_s)
return ids
