-- Move a reservation on: release it (stock back to available) or commit it
-- (reserved stock leaves as shipped). Only a reservation in state "reserved"
-- changes; an order with no reservation yet is marked "cancelled" on release,
-- so a reservation that arrives later is refused. The lines are read here, in
-- the step that moves them: a caller that named other skus than the
-- reservation holds (it did not know them, or the order was reserved since)
-- gets them back and nothing is written. The message that moved it is kept as
-- "settled_by", so that message, handled again after a crash before its
-- commit, still announces the move its first run made.
-- KEYS[1] the reservation, KEYS[2..] the stock hash of each sku of ARGV[3..]
-- ARGV[1] "release" or "commit", ARGV[2] the message's id, ARGV[3..] skus
-- Returns {'lines', sku...} when ARGV's skus are not the reservation's lines;
-- else {state after the call, the id of the message that settled it ('' if none)}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  if ARGV[1] == 'release' then
    redis.call('HSET', KEYS[1], 'state', 'cancelled', 'settled_by', ARGV[2])
    return {'cancelled', ARGV[2]}
  end
  return {'none', ''}
end
if state ~= 'reserved' then
  return {state, redis.call('HGET', KEYS[1], 'settled_by') or ''}
end
local lines, given = {}, {}
for k = 3, #ARGV do given[ARGV[k]] = true end
local same = true
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 5) == 'line:' then
    local sku = string.sub(field, 6)
    lines[#lines + 1] = sku
    if not given[sku] then same = false end
  end
end
if not same or #lines ~= #ARGV - 2 then
  return {'lines', unpack(lines)}
end
for k = 2, #KEYS do
  local qty = tonumber(redis.call('HGET', KEYS[1], 'line:' .. ARGV[k + 1]))
  redis.call('HINCRBY', KEYS[k], 'reserved', -qty)
  if ARGV[1] == 'release' then
    redis.call('HINCRBY', KEYS[k], 'available', qty)
  else
    redis.call('HINCRBY', KEYS[k], 'shipped', qty)
  end
end
local after = ARGV[1] == 'release' and 'released' or 'committed'
redis.call('HSET', KEYS[1], 'state', after, 'settled_by', ARGV[2])
return {after, ARGV[2]}
