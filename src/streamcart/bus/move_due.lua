-- Move the due entries of a delayed sorted set into their stream, atomically:
-- an entry is either still waiting, in the stream or parked, never two of
-- these, never none. An entry that cannot be added (not a list of fields,
-- too many of them, a target that is not a stream) is parked with its error,
-- so the entries due after it still move.
-- KEYS[1] the delayed sorted set, KEYS[2] the stream, KEYS[3] the parked hash
-- (all in one hash slot)
-- ARGV[1] the most entries to move
-- Returns {moved, entries parked (now or by an earlier run) still to dead-letter}.

-- An entry is "<byte length>:<bytes>" per field name and value, end to end,
-- so any bytes survive; one written as a JSON array is read too.
local function fields_of(member)
  if string.sub(member, 1, 1) == '[' then
    return cjson.decode(member)
  end
  local fields, at, size = {}, 1, #member
  while at <= size do
    -- Digits only: a sign or a fraction would walk back or stall, for ever.
    local digits = string.match(member, '^%d+:', at)
    if not digits then
      error('undecodable: not a list of length-prefixed fields')
    end
    local start = at + #digits
    local length = tonumber(string.sub(digits, 1, -2))
    if start + length - 1 > size then
      error('undecodable: a field runs past the end of the entry')
    end
    fields[#fields + 1] = string.sub(member, start, start + length - 1)
    at = start + length
  end
  return fields
end

local function add(member)
  local fields = fields_of(member)
  if #fields == 0 or #fields % 2 == 1 then
    error('undecodable: ' .. #fields .. ' field names and values do not pair up')
  end
  return redis.call('XADD', KEYS[2], '*', unpack(fields))
end

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, member in ipairs(due) do
  local ok, err = pcall(add, member)
  if ok then
    moved = moved + 1
  else
    local reason = type(err) == 'table' and (err.err or err.msg) or tostring(err)
    reason = string.gsub(reason, '^user_script:%d+: ', '')
    redis.call('HSET', KEYS[3], member, reason)
  end
  redis.call('ZREM', KEYS[1], member)
end
return {moved, redis.call('HLEN', KEYS[3])}
