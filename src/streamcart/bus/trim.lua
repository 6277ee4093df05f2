-- Trim a stream to about MAXLEN entries, but never past an entry that a
-- consumer group still needs: its oldest pending entry, or anything after
-- its last-delivered id. MAXLEN on XADD would trim pending entries away.
-- KEYS[1] the stream
-- ARGV[1] the length to keep, ARGV[2] the most entries to drop in one call
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local length = redis.call('XLEN', KEYS[1])
local keep = tonumber(ARGV[1])
if length <= keep then return 0 end
local drop = math.min(length - keep, tonumber(ARGV[2]))
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', drop + 1)
local minid = head[#head][1]

for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if older(info['last-delivered-id'], minid) then minid = info['last-delivered-id'] end
  if tonumber(info['pending']) > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], info['name'])[2]
    if older(oldest, minid) then minid = oldest end
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
