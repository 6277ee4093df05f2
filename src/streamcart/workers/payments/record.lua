-- The sandbox provider's books: keep the first answer under an idempotency
-- key and, when money moved, write it to the ledger, in one step.
-- KEYS[1] answers by key (hash), KEYS[2] the ledger (stream)
-- ARGV[1] the idempotency key, ARGV[2] the answer (JSON), ARGV[3] "" when no
-- money moved, else the ledger entry's kind; ARGV[4..] its fields as pairs
-- Returns the answer kept under the key: this one, or an earlier one.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return redis.call('HGET', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'kind', ARGV[3], 'key', ARGV[1], unpack(ARGV, 4))
end
return ARGV[2]
