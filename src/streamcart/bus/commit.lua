-- Apply a handler's effects at most once: its writes, its emitted messages
-- (into the service's outbox) and the message's done marker.
-- A script is not rolled back when a command in it fails, so what can be known
-- to fail (a key of the wrong type) is checked before the first write, and the
-- marker is written before the effects: a write that still fails halfway
-- leaves the message marked, so no retry applies its first writes again.
-- KEYS[1] the done marker, KEYS[2] the outbox, KEYS[3..] every key the writes
-- touch (declared for Redis Cluster; all in the service's slot)
-- ARGV[1] the marker's time to live (seconds), ARGV[2] how many writes,
-- then each write as: argument count, command, arguments...;
-- then each message as: field count (pairs), fields as name, value pairs
-- Returns {'dup'} when the marker exists (applied before); {'refused', n, why}
-- when write n cannot succeed (nothing is written); {'failed', n, error} when
-- write n failed after the marker (the writes before it are applied);
-- else {'ok', outbox ids...}.

-- The type a command needs its first key to hold (or not to exist).
local NEEDS = {}
local function family(kind, names)
  for name in string.gmatch(names, '%S+') do NEEDS[name] = kind end
end
family('string', 'INCR INCRBY DECR DECRBY INCRBYFLOAT APPEND SETRANGE SETBIT GETSET GETEX PFADD')
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

local function type_of(key)
  local reply = redis.call('TYPE', key)
  if type(reply) == 'table' then return reply['ok'] end
  return reply
end

local function describe(n, command, key)
  return string.format('write %d (%s %s)', n, command, key)
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'dup'}
end

-- Check every write against the types the keys will hold by then.
local holds = {}
local writes = {}
local i = 3
for n = 1, tonumber(ARGV[2]) do
  local count = tonumber(ARGV[i])
  local command, key = string.upper(ARGV[i + 1]), ARGV[i + 2]
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
if i <= #ARGV then
  local outbox = type_of(KEYS[2])
  if outbox ~= 'none' and outbox ~= 'stream' then
    return {'refused', 0, 'the outbox ' .. KEYS[2] .. ' holds a ' .. outbox .. ', not a stream'}
  end
end

redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
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
  result[#result + 1] = redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + count * 2))
  i = i + count * 2 + 1
end
return result
