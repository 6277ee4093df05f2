"""Publishing to topics and inboxes, in batches and with a delay."""

from __future__ import annotations

import asyncio
import json

from fakeredis import FakeAsyncRedis

from streamcart.bus import delayed
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher

KEYS = Keys("t")


async def test_events_go_to_their_topic_and_commands_to_the_inbox(
    fake_redis: FakeAsyncRedis,
) -> None:
    publisher = Publisher(fake_redis, KEYS)
    event_id = await publisher.publish("order.placed", {"order_id": "o1"}, key="o1")
    command_id = await publisher.publish("orders.cancel", {"order_id": "o1"}, to="orders")
    [(_, event)] = await fake_redis.xrange("t:events:order")
    [(_, command)] = await fake_redis.xrange("t:inbox:orders")
    assert event == {
        "type": "order.placed",
        "data": '{"order_id":"o1"}',
        "id": event_id,
        "key": "o1",
    }
    assert command["id"] == command_id and command["type"] == "orders.cancel"


async def test_a_batch_keeps_order_and_ids(fake_redis: FakeAsyncRedis) -> None:
    messages = [Message(type="order.placed", data={"n": i}) for i in range(2_500)]
    ids = await Publisher(fake_redis, KEYS).publish_many(messages, chunk=1_000)
    entries = await fake_redis.xrange("t:events:order")
    assert [fields["id"] for _, fields in entries] == ids
    assert [json.loads(fields["data"])["n"] for _, fields in entries] == list(range(2_500))


async def test_a_delayed_message_enters_its_stream_once_it_is_due(
    fake_redis: FakeAsyncRedis,
) -> None:
    publisher = Publisher(fake_redis, KEYS)
    message_id = await publisher.publish("order.placed", {"n": 1}, delay_ms=300)
    assert await delayed.move_due(fake_redis, KEYS, "orders") == 0
    assert await fake_redis.xlen("t:events:order") == 0
    await asyncio.sleep(0.35)
    assert await delayed.move_due(fake_redis, KEYS, "orders") == 1
    assert await delayed.move_due(fake_redis, KEYS, "orders") == 0  # moved once, never twice
    [(_, fields)] = await fake_redis.xrange("t:events:order")
    assert fields["id"] == message_id
    assert await delayed.pending_delayed(fake_redis, KEYS, "t:events:order") == 0


async def test_moving_survives_a_flushed_script_cache(fake_redis: FakeAsyncRedis) -> None:
    publisher = Publisher(fake_redis, KEYS)
    await publisher.publish("order.placed", {"n": 1}, delay_ms=1)
    await asyncio.sleep(0.01)
    await fake_redis.script_flush()  # as after a Redis restart
    assert await delayed.move_due(fake_redis, KEYS, "orders") == 1
