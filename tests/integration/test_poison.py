"""A message that keeps failing ends in the dead-letter stream after
``max_attempts``, and ``streamcart dlq replay`` sends it back to its service's
inbox only, where it succeeds once the cause is fixed."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.integration.services import FAST_OPTIONS
from tests.integration.support import (
    CounterKeys,
    Workers,
    cli,
    pending,
    run_process,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"


async def _message_streams(redis: Redis, namespace: str) -> dict[str, int]:
    """Every stream a message can be sent to (inboxes, topics, dead letters) and its length.

    Only these: spans, config history and the like grow on their own schedule,
    and are not where a replay could go.
    """
    found: dict[str, int] = {}
    for kind in ("inbox", "events", "dlq"):
        async for key in redis.scan_iter(match=f"{namespace}:{kind}:*", _type="stream"):
            found[key] = int(await redis.xlen(key))
    return found


async def test_poison_message_is_dead_lettered_then_replayed_to_the_inbox_only(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """``counter.fail`` is dead-lettered with ``dlq_attempts == max_attempts``;
    after the fix, ``dlq replay`` puts it back in the inbox (no events stream),
    it is handled once and the DLQ is empty."""
    keys = CounterKeys(namespace)
    await real_redis.xadd(keys.inbox, {"type": "counter.fail", "data": '{"name": "p"}', "id": "m1"})

    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)

        async def dead_letter() -> dict[str, str] | None:
            entries = await real_redis.xrange(keys.dlq)
            return entries[0][1] if entries else None

        dead = await wait_for(dead_letter, within=30, what="a dead letter", context=workers.tails)
        assert dead["dlq_attempts"] == str(FAST_OPTIONS.max_attempts)
        assert dead["dlq_error"].startswith("TransientError:")
        assert "broken until it is fixed" in dead["dlq_error"]
        assert dead["dlq_service"] == "counter"
        assert dead["dlq_stream"] == keys.inbox
        assert (dead["type"], dead["data"], dead["id"]) == ("counter.fail", '{"name": "p"}', "m1")
        assert await real_redis.hget(keys.counts, "p") is None
        # Dead-lettering acknowledges the entry; the ack is flushed just after.
        await wait_for(lambda: _none_pending(real_redis, keys), within=10, what="the ack")
        assert await real_redis.xlen(keys.dlq) == 1

        await real_redis.hset(keys.fixed, "p", "1")
        before = await _message_streams(real_redis, namespace)
        code, out, err = await run_process(cli(redis_url, namespace, "dlq", "replay", "counter"))
        assert code == 0, err
        assert f"replayed 1 to {keys.inbox}" in out

        async def handled() -> bool:
            return await real_redis.hget(keys.counts, "p") == "1"

        await wait_for(handled, within=30, what="the replayed message", context=workers.tails)
        await wait_for(
            lambda: _none_pending(real_redis, keys), within=10, what="the ack of the replay"
        )
        assert worker.alive()

    after = await _message_streams(real_redis, namespace)
    # The registry's own instance_up/instance_down events are not the replay's doing.
    lifecycle = f"{namespace}:events:system"
    grown = {
        key: n - before.get(key, 0)
        for key, n in after.items()
        if n != before.get(key, 0) and key != lifecycle
    }
    assert grown == {keys.inbox: 1, keys.dlq: -1}, "the replay went somewhere besides the inbox"
    assert not [key for key in after if ":events:" in key and key != lifecycle]
    _, replayed = (await real_redis.xrevrange(keys.inbox, count=1))[0]
    assert replayed == {"type": "counter.fail", "data": '{"name": "p"}', "id": "m1"}
    assert await real_redis.xlen(keys.dlq) == 0
    assert await real_redis.hget(keys.counts, "p") == "1"


async def _none_pending(redis: Redis, keys: CounterKeys) -> bool:
    return await pending(redis, keys.inbox, keys.group) == 0
