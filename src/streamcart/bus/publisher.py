"""Publishing: events to topic streams, commands to service inboxes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from redis.asyncio import Redis

from streamcart.bus import delayed
from streamcart.bus.envelope import ID, Fields, build_fields
from streamcart.bus.keys import Keys
from streamcart.telemetry import tracing


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message to publish: to its topic stream, or to service ``to``'s inbox."""

    type: str
    data: Any
    key: str | None = None
    to: str | None = None
    id: str | None = None


class Publisher:
    """Writes messages to streams; every message gets a unique ``id``.

    Streams are not trimmed here: ``XADD MAXLEN`` would drop entries still
    pending in a lagging group. Consumers trim safely (see ``trim.lua``).
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def publish(
        self,
        message_type: str,
        data: Any,
        *,
        key: str | None = None,
        to: str | None = None,
        message_id: str | None = None,
        delay_ms: int | None = None,
        extra: Fields | None = None,
    ) -> str:
        """Publish one message; returns its id. With ``delay_ms`` it enters
        the stream that many milliseconds later (by the Redis clock)."""
        fields = build_fields(message_type, data, message_id=message_id, key=key, extra=extra)
        stream = self.keys.destination(message_type, to)
        tracing.sending(fields, message_type, stream)
        if delay_ms:
            await delayed.schedule(self.redis, self.keys, stream, fields, delay_ms)
        else:
            await self.redis.xadd(stream, fields)
        return fields[ID]

    async def publish_many(self, messages: Iterable[Message], *, chunk: int = 1_000) -> list[str]:
        """Publish messages in pipelined chunks; returns their ids in order."""
        ids: list[str] = []
        pending: list[tuple[str, Fields]] = []
        for message in messages:
            fields = build_fields(
                message.type, message.data, message_id=message.id, key=message.key
            )
            stream = self.keys.destination(message.type, message.to)
            tracing.sending(fields, message.type, stream)
            pending.append((stream, fields))
            ids.append(fields[ID])
            if len(pending) >= chunk:
                await self._send(pending)
                pending = []
        if pending:
            await self._send(pending)
        return ids

    async def _send(self, entries: list[tuple[str, Fields]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, fields in entries:
                pipe.xadd(stream, fields)
            await pipe.execute()
