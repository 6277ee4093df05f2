-- Deliver a reply only if its caller's reply stream still exists: a caller
-- that is gone (its stream expired or deleted) must not get a stream recreated
-- that nobody would ever read or delete.
-- KEYS[1] the caller's reply stream
-- ARGV[1] the most entries to keep, ARGV[2..] the reply's fields as name, value pairs
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
return 1
