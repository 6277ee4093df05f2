-- Renew the claim on entries this consumer is still working on, so no other
-- consumer reclaims a long-running handler's entry. An entry another consumer
-- has claimed meanwhile is not taken back: its id is returned as lost. An
-- entry no longer pending (its ack is on the way) is left alone.
-- KEYS[1] the stream
-- ARGV[1] the group, ARGV[2] this consumer, ARGV[3..] the entry ids
local lost = {}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if entry then
    if entry[2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      lost[#lost + 1] = ARGV[i]
    end
  end
end
return lost
