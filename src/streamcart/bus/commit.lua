-- Apply a handler's effects at most once: its writes, its emitted messages
-- (into the service's outbox) and the message's marker in the dedup window
-- (see bus/dedup.py and docs/contract.md).
-- A script is not rolled back when a command in it fails, so what can be known
-- to fail (a key of the wrong type) is checked before the first write, and the
-- marker is written before the effects: a write that still fails halfway
-- leaves the message marked, so no retry applies its first writes again.
-- KEYS[1] the outbox, KEYS[2] the dedup index, KEYS[3] the buckets' counts,
-- KEYS[4..3+k] the shard of each bucket in view where this message's marker
-- would be (the newest last), then every key the writes touch (declared for
-- Redis Cluster; all in the service's slot)
-- ARGV[1] a new bucket's width (ms), ARGV[2] the most fields of a shard,
-- ARGV[3] the marker, ARGV[4] 1 to only prepare (check the view, the marker
-- and the bucket; answer {'ready'}), ARGV[5] k, ARGV[6..5+k] the view,
-- then how many writes, then each write as: argument count, command,
-- arguments...; then each message as: field count (pairs), fields as name,
-- value pairs
-- Returns {'dup'} when the marker exists (applied before); {'stale', members}
-- when the view is not the index (nothing is written but, when the newest
-- bucket is over or full, a new one); {'refused', n, why} when write n cannot
-- succeed (nothing is written); {'failed', n, error} when write n failed after
-- the marker (the writes before it are applied); else {'ok', outbox ids...}.

-- The type a command needs its first key to hold (or not to exist).
local NEEDS = {}
local function family(kind, names)
  for name in string.gmatch(names, '%S+') do NEEDS[name] = kind end
end
family('string', 'INCR INCRBY DECR DECRBY INCRBYFLOAT APPEND SETRANGE SETBIT GETSET GETEX')
family('hash', 'HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT')
family('set', 'SADD SREM SPOP SMOVE')
family('zset', 'ZADD ZINCRBY ZREM ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX ZPOPMIN ZPOPMAX')
family('list', 'LPUSH LPUSHX RPUSH RPUSHX LPOP RPOP LREM LSET LTRIM LINSERT LMOVE RPOPLPUSH')
family('stream', 'XADD XDEL XTRIM')
-- What the key holds after a command that replaces it whatever it held.
local REPLACES = {SET = 'string', SETEX = 'string', PSETEX = 'string', DEL = 'none', UNLINK = 'none'}
-- Commands that may empty (and so delete) their key: its type is unknown after.
local EMPTIES = {}
for name in string.gmatch('HDEL SREM SPOP SMOVE ZREM ZREMRANGEBYSCORE ZREMRANGEBYRANK '
    .. 'ZREMRANGEBYLEX ZPOPMIN ZPOPMAX LPOP RPOP LREM LTRIM LMOVE RPOPLPUSH', '%S+') do
  EMPTIES[name] = true
end

-- unpack() fails past about 8,000 values (Lua's C stack), and it runs after
-- the marker: a write or message that large is refused before anything is written.
local MOST_ARGS = 7000

local function type_of(key)
  local reply = redis.call('TYPE', key)
  if type(reply) == 'table' then return reply['ok'] end
  return reply
end

local function describe(n, command, key)
  return string.format('write %d (%s %s)', n, command, key)
end

local width, cap, field = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local prepare, k = ARGV[4] == '1', tonumber(ARGV[5])
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local function stale()
  return {'stale', unpack(redis.call('ZRANGE', KEYS[2], 0, -1))}
end
if #members ~= k then return stale() end
for j = 1, k do
  if members[j] ~= ARGV[5 + j] then return stale() end
end
for j = 1, k do
  if redis.call('HEXISTS', KEYS[3 + j], field) == 1 then return {'dup'} end
end

-- Only the newest bucket is written to. A new one replaces it when it is over
-- or this shard is full; its shard count keeps shards about half full at the
-- rate the last one saw, and doubles when a shard filled early.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local newest = nil
if k > 0 then
  local seq, start, w, shards = string.match(members[k], '^(%d+):(%d+):(%d+):(%d+)$')
  newest = {seq = tonumber(seq), start = tonumber(start), width = tonumber(w), shards = tonumber(shards)}
end
local full = newest ~= nil and redis.call('HLEN', KEYS[3 + k]) >= cap
if newest == nil or full or now_ms >= newest.start + newest.width then
  local shards, seq = 1, now_ms
  if newest ~= nil then
    seq = math.max(now_ms, newest.seq + 1)
    if full then
      shards = newest.shards * 2
    else
      local count = tonumber(redis.call('HGET', KEYS[3], tostring(newest.seq)) or '0')
      local expected = count * width / math.max(1, now_ms - newest.start)
      shards = math.max(1, math.ceil(expected * 2 / cap))
    end
  end
  redis.call('ZADD', KEYS[2], seq, string.format('%d:%d:%d:%d', seq, now_ms, width, shards))
  return stale()
end
if prepare then return {'ready'} end

-- Check every write against the types the keys will hold by then.
local holds = {}
local writes = {}
local i = 7 + k
for n = 1, tonumber(ARGV[6 + k]) do
  local count = tonumber(ARGV[i])
  local command, key = string.upper(ARGV[i + 1]), ARGV[i + 2]
  if count > MOST_ARGS then
    return {'refused', n, describe(n, command, key) .. ' has ' .. count
      .. ' arguments, over the ' .. MOST_ARGS .. ' one command of a commit may have'}
  end
  local now = holds[key]
  if now == nil then now = type_of(key) end
  local need = NEEDS[command]
  if need ~= nil and now ~= '?' and now ~= 'none' and now ~= need then
    return {'refused', n, describe(n, command, key) .. ' needs a ' .. need
      .. ' or no key, and the key holds a ' .. now}
  end
  if REPLACES[command] ~= nil then
    holds[key] = REPLACES[command]
  elseif need ~= nil and not EMPTIES[command] then
    holds[key] = need
  else
    holds[key] = '?'
  end
  writes[n] = {i + 1, i + count}
  i = i + count + 1
end
local at, message = i, 0
while at <= #ARGV do
  message = message + 1
  local count = tonumber(ARGV[at])
  if count * 2 > MOST_ARGS then
    return {'refused', 0, 'message ' .. message .. ' has ' .. count .. ' fields, over the '
      .. MOST_ARGS / 2 .. ' one message of a commit may have'}
  end
  at = at + count * 2 + 1
end
if i <= #ARGV then
  local outbox = type_of(KEYS[1])
  if outbox ~= 'none' and outbox ~= 'stream' then
    return {'refused', 0, 'the outbox ' .. KEYS[1] .. ' holds a ' .. outbox .. ', not a stream'}
  end
end

redis.call('HSET', KEYS[3 + k], field, 1)
redis.call('HINCRBY', KEYS[3], tostring(newest.seq), 1)
for n, span in ipairs(writes) do
  local reply = redis.pcall(unpack(ARGV, span[1], span[2]))
  if type(reply) == 'table' and reply['err'] ~= nil then
    return {'failed', n, describe(n, string.upper(ARGV[span[1]]), ARGV[span[1] + 1])
      .. ': ' .. tostring(reply['err'])}
  end
end
local result = {'ok'}
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  result[#result + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + count * 2))
  i = i + count * 2 + 1
end
return result
