"""The dedup window's memory on a real server: at most 64 bytes a message.

Measured with MEMORY USAGE (exact, SAMPLES 0) over every key of the window,
after 5,000 commits of messages with publisher-made ids: a size bound, not a
timing one.
"""

from __future__ import annotations

from redis.asyncio import Redis

from streamcart.bus.dedup import SHARD_FIELDS, DedupWindow
from streamcart.bus.envelope import new_message_id
from streamcart.bus.keys import Keys
from tests.unit.test_dedup import commit_directly

MESSAGES = 5_000
BYTES_PER_MESSAGE = 64


async def test_the_window_costs_at_most_64_bytes_a_message(
    real_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    window = DedupWindow(real_redis, keys, "counter")
    for _ in range(MESSAGES):
        await commit_directly(real_redis, new_message_id(), keys=keys, window=window, window_s=3600)
    index = keys.dedup_index("counter")
    dedup_keys = [key async for key in real_redis.scan_iter(match=f"{index}*", count=1000)]
    used = 0
    for key in dedup_keys:
        used += await real_redis.memory_usage(key, samples=0)
    per_message = used / MESSAGES
    assert per_message <= BYTES_PER_MESSAGE, f"{per_message:.1f} bytes a message"
    shards = [key for key in dedup_keys if key not in (index, keys.dedup_counts("counter"))]
    for key in shards:
        assert await real_redis.hlen(key) <= SHARD_FIELDS
        assert await real_redis.object("encoding", key) == "listpack"
