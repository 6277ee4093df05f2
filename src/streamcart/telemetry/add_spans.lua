-- Append a batch of finished spans to the capped trace stream in one call.
-- KEYS[1] the trace stream
-- ARGV[1] the most entries to keep (approximately), ARGV[2..] trace id, span JSON pairs
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'trace_id', ARGV[i], 'span', ARGV[i + 1])
end
return (#ARGV - 1) / 2
