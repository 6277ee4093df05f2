-- Whether a service has a live instance: its newest heartbeat is within the TTL,
-- on this server's clock (a script, so the clock and the set are read in one
-- call on the node that holds the set, standalone or cluster alike).
-- KEYS[1] the service's instances sorted set (instance id -> heartbeat ms)
-- ARGV[1] the TTL in ms
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= now_ms - tonumber(ARGV[1]) then
  return 1
end
return 0
