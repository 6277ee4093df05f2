-- Reserve every line of an order, or none: one step, so concurrent orders
-- can never oversell. A second call for the same order answers as the first;
-- the stock that fell low is answered again only to the message that reserved
-- it (kept as "reserved_by"), so that message, handled again after a crash
-- before its commit, still announces it, and no other message does.
-- KEYS[1] the order's reservation (hash), KEYS[2..] the stock hash of each line
-- ARGV[1] the low-stock threshold, ARGV[2] the message's id, then per line:
-- sku, quantity
-- Returns {state, shortages, low}: state "reserved", "rejected" or
-- "cancelled"; shortages "sku=wanted/available ..."; low "sku=available ..."
-- for stock that fell below the threshold with this order.
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  local low = ''
  if redis.call('HGET', KEYS[1], 'reserved_by') == ARGV[2] then
    low = redis.call('HGET', KEYS[1], 'low') or ''
  end
  return {state, redis.call('HGET', KEYS[1], 'shortages') or '', low}
end
local threshold = tonumber(ARGV[1])
local shortages = {}
for k = 2, #KEYS do
  local sku, qty = ARGV[2 * k - 1], tonumber(ARGV[2 * k])
  local available = tonumber(redis.call('HGET', KEYS[k], 'available') or '0')
  if available < qty then
    shortages[#shortages + 1] = sku .. '=' .. qty .. '/' .. available
  end
end
if #shortages > 0 then
  local text = table.concat(shortages, ' ')
  redis.call('HSET', KEYS[1], 'state', 'rejected', 'shortages', text)
  return {'rejected', text, ''}
end
local low = {}
for k = 2, #KEYS do
  local sku, qty = ARGV[2 * k - 1], tonumber(ARGV[2 * k])
  local after = redis.call('HINCRBY', KEYS[k], 'available', -qty)
  redis.call('HINCRBY', KEYS[k], 'reserved', qty)
  redis.call('HSET', KEYS[1], 'line:' .. sku, qty)
  if after < threshold and after + qty >= threshold then
    low[#low + 1] = sku .. '=' .. after
  end
end
local text = table.concat(low, ' ')
redis.call('HSET', KEYS[1], 'state', 'reserved', 'reserved_by', ARGV[2], 'low', text)
return {'reserved', '', text}
