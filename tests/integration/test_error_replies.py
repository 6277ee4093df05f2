"""Error replies from a real server that a worker must survive (PITFALLS 18): a
refused acknowledgement, a stream deleted under a blocked read. Nothing is lost,
nothing applied twice, the worker keeps its process and says what it waits for."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from tests.integration.faults import acl_user
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    cli,
    pending,
    run_process,
    wait_applied,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"
# Heartbeats every 300 ms: health and status see a change within a second.
REGISTRY_COUNTER = "tests.integration.services:registry_counter"


async def test_acknowledgements_refused_with_noperm_are_waited_out_and_fail_health(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """A worker whose XACKs are refused goes on handling, keeps its acks, and
    says so to `health` (exit 1) and `status`; once allowed, it flushes them:
    every message applied once, nothing pending, the same process."""
    keys = CounterKeys(namespace)
    async with acl_user(real_redis, redis_url) as user:
        await user.deny("xack")
        url = user.url
        with Workers(url, namespace, tmp_path) as workers:
            worker = workers.start(REGISTRY_COUNTER)
            await worker.consumer_name()
            publisher = Publisher(real_redis, Keys(namespace))
            ids = [
                await publisher.publish("counter.increment", {"name": "a"}, to="counter")
                for _ in range(20)
            ]

            async def unhealthy() -> str | None:
                code, _, err = await run_process(cli(url, namespace, "health", REGISTRY_COUNTER))
                return err if code == 1 and "NOPERM" in err else None

            err = await wait_for(unhealthy, within=30, what="health to fail", context=workers.tails)
            assert "acknowledging" in (err or "")
            code, out, _ = await run_process(cli(redis_url, namespace, "status"))
            assert code == 0 and "NOPERM" in out, out
            assert await pending(real_redis, keys.inbox, keys.group) == len(ids)

            await user.allow("xack")
            applied = await wait_applied(real_redis, keys, len(ids), within=30)
            assert_each_applied_once(applied, set(ids))

            said: list[str] = []

            async def healthy() -> bool:
                code, _, err = await run_process(cli(url, namespace, "health", REGISTRY_COUNTER))
                said[:] = [err]
                return code == 0

            await wait_for(healthy, within=30, what="health to pass", context=lambda: "".join(said))
            assert worker.alive(), worker.tail()


async def test_a_stream_deleted_under_a_blocked_read_is_recreated_without_a_restart(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = CounterKeys(namespace)
    publisher = Publisher(real_redis, Keys(namespace))
    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)
        await worker.consumer_name()
        first = await publisher.publish("counter.increment", {"name": "a"}, to="counter")
        await wait_applied(real_redis, keys, 1, within=30, context=workers.tails)

        await real_redis.delete(keys.inbox)  # UNBLOCKED for the worker's XREADGROUP

        async def group_back() -> bool:
            groups = (
                await real_redis.xinfo_groups(keys.inbox)
                if await real_redis.exists(keys.inbox)
                else []
            )
            return any(group["name"] == keys.group for group in groups)

        await wait_for(group_back, within=30, what="the group created again", context=workers.tails)
        later = [
            await publisher.publish("counter.increment", {"name": "a"}, to="counter")
            for _ in range(5)
        ]
        applied = await wait_applied(real_redis, keys, 6, within=30, context=workers.tails)
        assert_each_applied_once(applied, {first, *later})
        assert worker.alive(), worker.tail()
        # UNBLOCKED if the delete caught it blocked, NOGROUP if between reads.
        assert "the stream was deleted" in worker.log() or "is gone" in worker.log()
