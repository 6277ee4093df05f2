"""One bad entry at the head of a queue (PITFALLS 21), on a real server: an entry
the delayed mover or the outbox relay cannot send on is dead-lettered with its
reason, and every entry behind it still goes out, once."""

from __future__ import annotations

from redis.asyncio import Redis

from streamcart.bus import delayed
from streamcart.bus.commit import OUTBOX_STREAM, relay_stale
from streamcart.bus.keys import Keys
from tests.integration.support import raw_client

GOOD = {"type": "counter.increment", "data": '{"name": "a"}', "id": "good"}


async def test_a_bad_entry_is_dead_lettered_and_the_rest_moves(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    inbox = keys.inbox("counter")
    many = {"type": "counter.increment", "data": "{}", **{f"f{n}": "v" for n in range(4_100)}}
    await delayed.schedule(real_redis, keys, inbox, many, 0)
    # Written by some other producer: neither of the formats the mover reads.
    await real_redis.zadd(keys.delayed(inbox), {"12:not enough": 0})
    await delayed.schedule(real_redis, keys, inbox, GOOD, 0)
    for n in range(3):
        await delayed.schedule(real_redis, keys, inbox, {**GOOD, "id": f"later-{n}"}, 0)

    assert await delayed.move_due(real_redis, keys, "orders") == 4

    moved = [fields["id"] for _, fields in await real_redis.xrange(inbox)]
    assert moved == ["good", "later-0", "later-1", "later-2"]
    dead = [fields for _, fields in await real_redis.xrange(keys.dlq("counter"))]
    assert len(dead) == 2
    reasons = sorted(letter["dlq_error"] for letter in dead)
    assert all(reason.startswith("DelayedMoveError: ") for reason in reasons), reasons
    assert any("unpack" in reason for reason in reasons), reasons
    assert any("undecodable" in reason for reason in reasons), reasons
    assert {letter["dlq_stream"] for letter in dead} == {inbox}
    assert await delayed.pending_delayed(real_redis, keys, inbox) == 0
    assert await real_redis.hlen(keys.delayed_parked(inbox)) == 0


async def test_a_target_that_is_not_a_stream_does_not_stop_other_streams(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    broken, fine = keys.events("broken"), keys.events("fine")
    await real_redis.set(broken, "not a stream")
    await delayed.schedule(real_redis, keys, broken, GOOD, 0)
    await delayed.schedule(real_redis, keys, fine, GOOD, 0)

    assert await delayed.move_due(real_redis, keys, "orders") == 1

    assert await real_redis.xlen(fine) == 1
    [letter] = [fields for _, fields in await real_redis.xrange(keys.dlq("orders"))]
    assert letter["dlq_error"].startswith("DelayedMoveError: WRONGTYPE")
    assert (letter["id"], letter["dlq_stream"]) == ("good", broken)


async def test_bytes_that_are_not_utf8_move_exactly(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    inbox = keys.inbox("counter")
    escaped = b"\xff\xfe:3:".decode("utf-8", "surrogateescape")
    await delayed.schedule(real_redis, keys, inbox, {"type": "a.b", "data": escaped}, 0)

    assert await delayed.move_due(real_redis, keys, "orders") == 1

    raw = raw_client(redis_url)
    try:
        [(_, fields)] = await raw.xrange(inbox)
    finally:
        await raw.aclose()
    assert fields == {b"type": b"a.b", b"data": b"\xff\xfe:3:"}


async def test_the_outbox_relay_dead_letters_what_it_cannot_publish_and_sends_the_rest_once(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    outbox, target, broken = keys.outbox("orders"), keys.events("order"), keys.events("broken")
    await real_redis.set(broken, "not a stream")
    for n, stream in enumerate([target, broken, target, target]):
        await real_redis.xadd(outbox, {**GOOD, "id": f"m{n}", OUTBOX_STREAM: stream})
    await real_redis.xadd(outbox, {**GOOD, "id": "nowhere"})  # names no target at all

    relayed = 0
    while await real_redis.xlen(outbox):  # entries of the current millisecond wait for the next
        relayed += await relay_stale(real_redis, keys, "orders", older_than_ms=0)
    assert relayed == 3
    assert await relay_stale(real_redis, keys, "orders", older_than_ms=0) == 0

    assert [f["id"] for _, f in await real_redis.xrange(target)] == ["m0", "m2", "m3"]
    dead = {f["id"]: f for _, f in await real_redis.xrange(keys.dlq("orders"))}
    assert set(dead) == {"m1", "nowhere"}
    assert dead["m1"]["dlq_error"].startswith("RelayError: WRONGTYPE")
    assert dead["m1"]["dlq_stream"] == broken
    assert "no target stream" in dead["nowhere"]["dlq_error"]
    assert await real_redis.xlen(outbox) == 0
