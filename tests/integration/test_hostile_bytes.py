"""Entries that are not text: bytes that are not UTF-8 in any field name or value,
or thousands of fields, written by a producer that is not Python. Each is
dead-lettered with reason ``undecodable``, its bytes kept exactly; the worker
keeps running and handles the entries behind it; ``dlq show`` prints the bytes
escaped and ``dlq replay`` sends the very same bytes back."""

from __future__ import annotations

import json
from pathlib import Path

from redis.asyncio import Redis

from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    cli,
    raw_client,
    run_process,
    wait_applied,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"
GOOD = b'{"name": "apples", "by": 1}'
HOSTILE: dict[str, dict[bytes, bytes]] = {
    "data": {b"type": b"counter.increment", b"data": b"\xff\xfe"},
    "field name": {b"type": b"counter.increment", b"data": GOOD, b"\xc3(": b"x"},
    "type": {b"type": b"counter.\xe9", b"data": GOOD},
    "id": {b"type": b"counter.increment", b"data": GOOD, b"id": b"\x80abc"},
    "many fields": {
        b"type": b"counter.increment",
        b"data": GOOD,
        **{f"f{n}".encode(): b"v" for n in range(4_100)},
    },
}


async def test_undecodable_entries_are_dead_lettered_byte_for_byte_and_the_rest_flows(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = CounterKeys(namespace)
    client = raw_client(redis_url)
    try:
        with Workers(redis_url, namespace, tmp_path) as workers:
            worker = workers.start(FAST_COUNTER)
            await worker.consumer_name()
            hostile_ids = {}
            for what, fields in HOSTILE.items():
                hostile_ids[what] = await client.xadd(keys.inbox, fields)  # type: ignore[arg-type]
            good = [f"m{n}" for n in range(20)]
            for message_id in good:
                await real_redis.xadd(
                    keys.inbox,
                    {"type": "counter.increment", "data": GOOD.decode(), "id": message_id},
                )

            applied = await wait_applied(
                real_redis, keys, len(good), within=30, context=workers.tails
            )
            assert_each_applied_once(applied, set(good))
            assert worker.alive(), worker.tail()

            async def all_dead() -> list[tuple[bytes, dict[bytes, bytes]]] | None:
                entries = await _stored(redis_url, keys.dlq)
                return entries if len(entries) == len(HOSTILE) else None

            dead = await wait_for(all_dead, within=30, what="5 dead letters", context=workers.tails)
            assert dead is not None
            by_original = {fields[b"dlq_id"].decode(): fields for _, fields in dead}
            for what, fields in HOSTILE.items():
                letter = by_original[_text(hostile_ids[what])]
                assert letter[b"dlq_error"].startswith(b"undecodable: "), (what, letter)
                kept = {k: v for k, v in letter.items() if not k.startswith(b"dlq_")}
                assert kept == fields, f"the dead letter of the bad {what} changed its bytes"
            assert (
                b"over the limit of 256"
                in by_original[_text(hostile_ids["many fields"])][b"dlq_error"]
            )

            entry_id = _text(hostile_ids["data"])
            dead_entry = next(_text(eid) for eid, f in dead if f[b"dlq_id"] == entry_id.encode())
            code, out, err = await run_process(
                cli(redis_url, namespace, "dlq", "show", "counter", dead_entry)
            )
            assert code == 0, err
            assert json.loads(out)["data"] == "\\xff\\xfe"

            code, out, err = await run_process(
                cli(redis_url, namespace, "dlq", "replay", "counter")
            )
            assert code == 0, err
            replayed = [f for _, f in await _stored(redis_url, keys.inbox)][-len(HOSTILE) :]
            for fields in replayed:
                original = {k: v for k, v in fields.items() if k != b"id"}
                assert original in [
                    {k: v for k, v in h.items() if k != b"id"} for h in HOSTILE.values()
                ]
            # Still undecodable: dead again, and the worker is still the same process.
            await wait_for(
                lambda: _dead_count(redis_url, keys.dlq, len(HOSTILE)),
                within=30,
                what="the replayed entries dead-lettered again",
                context=workers.tails,
            )
            assert worker.alive(), worker.tail()
    finally:
        await client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _stored(redis_url: str, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    client = raw_client(redis_url)
    try:
        return list(await client.xrange(stream))
    finally:
        await client.aclose()


async def _dead_count(redis_url: str, stream: str, count: int) -> bool:
    return len(await _stored(redis_url, stream)) == count
