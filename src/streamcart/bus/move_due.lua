-- Move the due entries of a delayed sorted set into their stream, atomically:
-- an entry is either still waiting or in the stream, never both, never neither.
-- KEYS[1] the delayed sorted set, KEYS[2] the stream (same hash slot)
-- ARGV[1] the most entries to move
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
  redis.call('ZREM', KEYS[1], member)
end
return #due
