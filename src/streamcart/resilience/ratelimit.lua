-- Token bucket: take `cost` tokens if the bucket holds them.
-- KEYS[1] the bucket, a hash: tokens (left after the last admission) and
--         ts (Redis time of that admission, in microseconds)
-- ARGV[1] rate, tokens per second; ARGV[2] burst, the capacity; ARGV[3] cost
-- Returns {allowed 0|1, tokens left (a number as a string), retry after in ms}
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
-- Waits from absurdly slow rates are capped where they still fit an integer reply.
local MAX_MS = 2 ^ 53

-- The server's clock only: hosts with skewed clocks share one limit.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])

-- A missing bucket is a full one: idle buckets expire once they would be full.
local tokens = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] and state[2] then
  -- max(0, ...): a failover to a server whose clock lags must not take tokens away.
  local elapsed_s = math.max(0, now_us - tonumber(state[2])) / 1000000
  -- min(burst, ...) also applies a lowered burst at once.
  tokens = math.min(burst, tonumber(state[1]) + elapsed_s * rate)
end

if tokens < cost then
  -- Refusals write nothing: the stored state already implies these tokens.
  local retry_ms = math.min(MAX_MS, math.ceil((cost - tokens) * 1000 / rate))
  return {0, string.format('%.17g', tokens), math.max(1, retry_ms)}
end

tokens = tokens - cost
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ts', string.format('%d', now_us))
-- Expire when it would be full again, plus a margin; a missing bucket means just that.
local full_ms = math.min(MAX_MS, math.ceil((burst - tokens) * 1000 / rate) + 1000)
redis.call('PEXPIRE', KEYS[1], string.format('%d', full_ms))
return {1, left, 0}
