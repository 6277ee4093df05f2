-- Apply a handler's effects exactly once, in one step: its writes, its
-- emitted messages (into the service's outbox) and the message's done marker.
-- KEYS[1] the done marker, KEYS[2] the outbox, KEYS[3..] every key the writes
-- touch (declared for Redis Cluster; all in the service's slot)
-- ARGV[1] the marker's time to live (seconds), ARGV[2] how many writes,
-- then each write as: argument count, command, arguments...;
-- then each message as: field count (pairs), fields as name, value pairs
-- Returns 0 when the marker exists (applied before), else the outbox ids.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local count = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + count))
  i = i + count + 1
end
local ids = {}
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + count * 2))
  i = i + count * 2 + 1
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return ids
