-- Shared by append_blocks.lua and compact_blocks.lua (put before each of them when it
-- is loaded: storage/scripting.py, lua_source): how a block joins a trade stream.
--
-- The watermark `wm` (meta hash) is the largest event ms of any in-order block. A
-- block whose first trade is at or after it gets id <first_ms>-<seq>; a block that
-- starts before it (late, out-of-order) gets id <wm>-<seq>, the field `l` = its first
-- ms, and a member "<id>@<first_ms>" with score last_ms in the late-block sorted set,
-- so range reads find it by its true time. The meta hash also keeps, per trading day,
-- the largest trade_id stored (field `tid:<day>`).

-- The stream's watermark (a string): the meta's `wm`, else the last entry's ms.
local function stream_watermark(stream, meta)
  local wm_s = redis.call('HGET', meta, 'wm')
  if not wm_s then
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if #top > 0 then
      wm_s = string.match(top[1][1], '^(%d+)-')
    else
      wm_s = '0'
    end
  end
  return wm_s
end

-- Append one block (first_ms, last_ms, trading_day, max_trade_id as strings): its
-- entry id and the watermark after it. The caller stores the watermark at the end.
local function append_block(stream, meta, late, wm_s, first_s, last_s, block, day_s, tid_s)
  local id
  if tonumber(first_s) >= tonumber(wm_s) then
    id = redis.call('XADD', stream, first_s .. '-*', 'b', block)
    wm_s = last_s
  else
    id = redis.call('XADD', stream, wm_s .. '-*', 'b', block, 'l', first_s)
    redis.call('ZADD', late, last_s, id .. '@' .. first_s)
  end
  local tid_field = 'tid:' .. day_s
  local old_tid = tonumber(redis.call('HGET', meta, tid_field) or '-1')
  if tonumber(tid_s) > old_tid then
    redis.call('HSET', meta, tid_field, tid_s)
  end
  return id, wm_s
end

