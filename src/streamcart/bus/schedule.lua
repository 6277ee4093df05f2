-- Schedule an entry for a stream, due DELAY ms from the server's clock.
-- KEYS[1] the stream's delayed sorted set
-- ARGV[1] delay in ms, ARGV[2] the entry's fields as a JSON array [k1, v1, ...]
local now = redis.call('TIME')
local due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], due, ARGV[2])
return due
