-- Append one block of feature rows to features:{SYMBOL} and move the worker's cursor
-- in the same atomic step.
-- KEYS[1] stream, KEYS[2] meta hash (schema, columns, rows), KEYS[3] cursor hash
-- ARGV: schema, columns_json, id_ms, t0, t1, n_rows, block, n_cursor, then n_cursor
--       (field, value) pairs
-- Returns {'ok', id} or {'schema', stored_schema} (nothing written) on a mismatch.
--
-- The entry id is <ms>-<seq> with ms = the block's last T in ms, or the stream's top
-- ms when that is later, so ids never go back; two blocks in one ms get seq 0, 1, ...
local stream, meta, cursor = KEYS[1], KEYS[2], KEYS[3]
local have = redis.call('HGET', meta, 'schema')
if have and have ~= ARGV[1] then
  return {'schema', have}
end
if not have then
  redis.call('HSET', meta, 'schema', ARGV[1], 'columns', ARGV[2])
end
local id = ''
local n = tonumber(ARGV[6])
if n > 0 then
  local ms = tonumber(ARGV[3])
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top > 0 then
    local top_ms = tonumber(string.match(top[1][1], '^(%d+)-'))
    if top_ms > ms then
      ms = top_ms
    end
  end
  id = redis.call('XADD', stream, string.format('%d', ms) .. '-*', 's', ARGV[1], 'n', ARGV[6],
                  't0', ARGV[4], 't1', ARGV[5], 'b', ARGV[7])
  redis.call('HINCRBY', meta, 'rows', n)
end
local n_cursor = tonumber(ARGV[8])
for i = 9, 8 + 2 * n_cursor, 2 do
  redis.call('HSET', cursor, ARGV[i], ARGV[i + 1])
end
return {'ok', id}
