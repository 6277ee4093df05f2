-- Delete a consumer from a group only if it owns no pending entry, checked
-- and done in one step: a process that took the name and read a batch in
-- between would lose that batch (DELCONSUMER drops a consumer's pending entries).
-- KEYS[1] the stream
-- ARGV[1] the group, ARGV[2] the consumer
-- Returns 1 when it was deleted, 0 when it owns something (or never existed).
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  for i = 1, #info, 2 do
    if info[i] == 'name' and info[i + 1] == ARGV[2] then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
  end
end
return 0
