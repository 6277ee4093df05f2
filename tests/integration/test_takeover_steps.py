"""The steps of a takeover on a real server, each atomic (PITFALLS 3, 7, 20): a
process that takes a dead consumer's name and reads a batch in between keeps
it, and an entry deleted from its stream is reported, never dropped quietly."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.registry.takeover import remove_if_idle, take_over

GROUP = "counter"


class ReadsBeforeDeleting:
    """A client that, just before whatever deletes the consumer, lets a new
    process under the same name read a batch: the race of PITFALLS 20."""

    def __init__(self, redis: Redis, stream: str, consumer: str) -> None:
        self._redis = redis
        self._stream = stream
        self._consumer = consumer
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._redis, name)
        if name not in ("xgroup_delconsumer", "evalsha"):
            return attribute

        async def racing(*args: Any, **kwargs: Any) -> Any:
            if not self.raced:
                self.raced = True
                await self._redis.xreadgroup(GROUP, self._consumer, {self._stream: ">"}, count=5)
            return await attribute(*args, **kwargs)

        return racing


async def test_a_batch_read_under_the_dead_name_during_removal_stays_pending(
    namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    stream = keys.inbox(GROUP)
    await real_redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await real_redis.xgroup_createconsumer(stream, GROUP, "host-0")
    for n in range(5):
        await real_redis.xadd(stream, {"n": str(n)})
    client = ReadsBeforeDeleting(real_redis, stream, "host-0")

    await remove_if_idle(client, keys, [stream], GROUP, "host-0", GROUP)  # type: ignore[arg-type]

    assert client.raced
    summary = await real_redis.xpending(stream, GROUP)
    assert summary["pending"] == 5, "the new process's batch was dropped with the consumer"
    assert {c["name"]: c["pending"] for c in summary["consumers"]} == {"host-0": 5}


async def test_entries_deleted_from_the_stream_are_reported_and_stay_pending(
    namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    stream = keys.inbox(GROUP)
    await real_redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    ids = [await real_redis.xadd(stream, {"n": str(n)}) for n in range(4)]
    await real_redis.xreadgroup(GROUP, "dead", {stream: ">"})
    await real_redis.xdel(stream, ids[1], ids[3])

    result = await take_over(real_redis, [stream], GROUP, "dead", "heir")

    assert result.claimed == 2
    assert result.deleted == [(stream, ids[1]), (stream, ids[3])]
    owners = {
        row["message_id"]: row["consumer"]
        for row in await real_redis.xpending_range(stream, GROUP, "-", "+", 10)
    }
    # Still pending until they are dead-lettered and acknowledged: never lost unseen.
    assert owners == {ids[0]: "heir", ids[1]: "dead", ids[2]: "heir", ids[3]: "dead"}
