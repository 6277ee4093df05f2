-- Take or renew a lease that only its holder may renew.
-- KEYS[1] the lease
-- ARGV[1] the holder's token, ARGV[2] the lease time in ms
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
