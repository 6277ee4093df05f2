-- Reserve every line of an order, or none: one step, so concurrent orders
-- can never oversell. A second call for the same order answers as the first.
-- KEYS[1] the order's reservation (hash), KEYS[2..] the stock hash of each line
-- ARGV[1] the low-stock threshold, then per line: sku, quantity
-- Returns {state, shortages, low}: state "reserved", "rejected" or
-- "cancelled"; shortages "sku=wanted/available ..."; low "sku=available ..."
-- for stock that fell below the threshold with this order.
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  return {state, redis.call('HGET', KEYS[1], 'shortages') or '', ''}
end
local threshold = tonumber(ARGV[1])
local shortages = {}
for k = 2, #KEYS do
  local sku, qty = ARGV[2 * k - 2], tonumber(ARGV[2 * k - 1])
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
  local sku, qty = ARGV[2 * k - 2], tonumber(ARGV[2 * k - 1])
  local after = redis.call('HINCRBY', KEYS[k], 'available', -qty)
  redis.call('HINCRBY', KEYS[k], 'reserved', qty)
  redis.call('HSET', KEYS[1], 'line:' .. sku, qty)
  if after < threshold and after + qty >= threshold then
    low[#low + 1] = sku .. '=' .. after
  end
end
redis.call('HSET', KEYS[1], 'state', 'reserved')
return {'reserved', '', table.concat(low, ' ')}
