-- Set or unset one config value, bump the version and record the change,
-- all or nothing. Setting the value a key already holds changes nothing.
-- KEYS[1] the scope hash, KEYS[2] the version counter, KEYS[3] the history stream
-- ARGV[1] the scope name, ARGV[2] the key, ARGV[3] the new JSON value or '' to unset,
-- ARGV[4] about how many history entries to keep
-- Returns {version, 1 if changed else 0, the old JSON value or '' when there was none}
local old = redis.call('HGET', KEYS[1], ARGV[2]) or ''
local new = ARGV[3]
if old == new then
  return {tonumber(redis.call('GET', KEYS[2]) or '0'), 0, old}
end
if new == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], new)
end
local version = redis.call('INCR', KEYS[2])
-- The server's clock, so every host records changes on the same timeline.
local now = redis.call('TIME')
local at = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
  'scope', ARGV[1], 'key', ARGV[2], 'old', old, 'new', new, 'at', at, 'version', version)
return {version, 1, old}
