-- Take over one page of what a dead consumer holds in a group, in one step.
-- An entry still in the stream is claimed for the heir (JUSTID: its delivery
-- count stays); one deleted from the stream (trimmed, XDEL) is left where it
-- is and returned, for the caller to dead-letter: XCLAIM would drop it from
-- the pending list without a trace.
-- KEYS[1] the stream
-- ARGV[1] the group, ARGV[2] the dead consumer, ARGV[3] the heir,
-- ARGV[4] the first id to look at ('-' or '(<id>'), ARGV[5] the page size
-- Returns {claimed ids, deleted ids, the last id looked at or false}.
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], '+', tonumber(ARGV[5]), ARGV[2])
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0}
local claimed, deleted = {}, {}
for _, row in ipairs(rows) do
  local id = row[1]
  if #redis.call('XRANGE', KEYS[1], id, id) == 1 then
    claimed[#claimed + 1] = id
    claim[#claim + 1] = id
  else
    deleted[#deleted + 1] = id
  end
end
if #claimed > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
local last = false
if #rows > 0 then
  last = rows[#rows][1]
end
return {claimed, deleted, last}
