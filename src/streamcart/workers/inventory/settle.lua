-- Move a reservation on: release it (stock back to available) or commit it
-- (reserved stock leaves as shipped). Only a reservation in state "reserved"
-- changes; an order with no reservation yet is marked "cancelled" on release,
-- so a reservation that arrives later is refused.
-- KEYS[1] the reservation, KEYS[2..] the stock hash of each of its lines
-- ARGV[1] "release" or "commit", ARGV[2..] the sku of each line (as KEYS)
-- Returns the state after the call, and whether this call changed it (1/0).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  if ARGV[1] == 'release' then
    redis.call('HSET', KEYS[1], 'state', 'cancelled')
    return {'cancelled', 1}
  end
  return {'none', 0}
end
if state ~= 'reserved' then
  return {state, 0}
end
for k = 2, #KEYS do
  local qty = tonumber(redis.call('HGET', KEYS[1], 'line:' .. ARGV[k]) or '0')
  redis.call('HINCRBY', KEYS[k], 'reserved', -qty)
  if ARGV[1] == 'release' then
    redis.call('HINCRBY', KEYS[k], 'available', qty)
  else
    redis.call('HINCRBY', KEYS[k], 'shipped', qty)
  end
end
local after = ARGV[1] == 'release' and 'released' or 'committed'
redis.call('HSET', KEYS[1], 'state', after)
return {after, 1}
