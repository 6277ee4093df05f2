"""One bad entry at the head of a queue (PITFALLS 21), on a real server: an entry
the delayed mover or the outbox relay cannot send on is dead-lettered with its
reason, and every entry behind it still goes out, once."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from streamcart.bus import delayed
from streamcart.bus.commit import OUTBOX_DELAY, OUTBOX_STREAM, relay_stale
from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from tests.integration.faults import acl_user
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
    # A digit to str.isdigit(), not to int(): it must not crash the relay.
    await real_redis.xadd(
        outbox, {**GOOD, "id": "squared", OUTBOX_STREAM: target, OUTBOX_DELAY: "²"}
    )

    relayed = 0
    while await real_redis.xlen(outbox):  # entries of the current millisecond wait for the next
        relayed += await relay_stale(real_redis, keys, "orders", older_than_ms=0)
    assert relayed == 3
    assert await relay_stale(real_redis, keys, "orders", older_than_ms=0) == 0

    assert [f["id"] for _, f in await real_redis.xrange(target)] == ["m0", "m2", "m3"]
    dead = {f["id"]: f for _, f in await real_redis.xrange(keys.dlq("orders"))}
    assert set(dead) == {"m1", "nowhere", "squared"}
    assert dead["squared"][OUTBOX_DELAY] == "²"  # the dead letter keeps the entry whole
    assert dead["m1"]["dlq_error"].startswith("RelayError: WRONGTYPE")
    assert dead["m1"]["dlq_stream"] == broken
    assert "no target stream" in dead["nowhere"]["dlq_error"]
    assert await real_redis.xlen(outbox) == 0


async def test_a_target_refused_for_a_passing_reason_keeps_its_outbox_entry(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    """NOPERM on one target (an ACL still being granted) is no fault of the
    entry: it stays in the outbox, the others go out, and once allowed it follows."""
    keys = Keys(namespace)
    outbox, fine, barred = keys.outbox("orders"), keys.events("order"), keys.events("barred")
    await real_redis.xadd(outbox, {**GOOD, "id": "to-barred", OUTBOX_STREAM: barred})
    await real_redis.xadd(outbox, {**GOOD, "id": "to-fine", OUTBOX_STREAM: fine})
    async with acl_user(real_redis, redis_url) as user:
        # Its own keys, its dead letters and one topic; the other topic read-only.
        await user.only_keys(f"~{outbox}", f"~{keys.dlq('orders')}", f"~{fine}", f"%R~{barred}")
        client = connect(user.url)
        try:
            with pytest.raises(NoPermissionError):
                while await client.xlen(outbox) == 2:  # this millisecond's entries wait
                    await relay_stale(client, keys, "orders", older_than_ms=0)
            assert [f["id"] for _, f in await real_redis.xrange(outbox)] == ["to-barred"]
            assert [f["id"] for _, f in await real_redis.xrange(fine)] == ["to-fine"]
            assert await real_redis.xlen(keys.dlq("orders")) == 0

            await user.only_keys("~*")
            assert await relay_stale(client, keys, "orders", older_than_ms=0) == 1
        finally:
            await client.aclose()
    assert [f["id"] for _, f in await real_redis.xrange(barred)] == ["to-barred"]
    assert await real_redis.xlen(outbox) == 0


async def test_a_length_that_walks_backwards_is_parked_not_looped_on(
    namespace: str, real_redis: Redis
) -> None:
    """``-3:`` would send a naive parser back to the start for ever, holding the
    whole server in one script (BUSY for every client)."""
    keys = Keys(namespace)
    inbox = keys.inbox("counter")
    for member in ("-3:", "1.5:ab", "+2:ab", "99:short"):
        await real_redis.zadd(keys.delayed(inbox), {member: 0})
    await real_redis.sadd(keys.delayed_index(), inbox)
    await delayed.schedule(real_redis, keys, inbox, GOOD, 0)

    assert await delayed.move_due(real_redis, keys, "orders") == 1

    dead = [fields for _, fields in await real_redis.xrange(keys.dlq("counter"))]
    assert sorted(letter["delayed_entry"] for letter in dead) == sorted(
        ["-3:", "1.5:ab", "+2:ab", "99:short"]
    )


async def test_entries_parked_by_an_earlier_run_are_dead_lettered_by_the_next(
    namespace: str, real_redis: Redis
) -> None:
    """The mover died between parking an entry and dead-lettering it: the next
    run, with nothing due, still finishes the job."""
    keys = Keys(namespace)
    inbox = keys.inbox("counter")
    await real_redis.hset(keys.delayed_parked(inbox), "12:not enough", "undecodable: ...")
    await real_redis.sadd(keys.delayed_index(), inbox)

    assert await delayed.move_due(real_redis, keys, "orders") == 0

    [letter] = [fields for _, fields in await real_redis.xrange(keys.dlq("counter"))]
    assert letter["delayed_entry"] == "12:not enough"
    assert await real_redis.hlen(keys.delayed_parked(inbox)) == 0
