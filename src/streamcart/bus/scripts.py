"""Lua scripts kept in ``.lua`` files beside the code that runs them.

Scripts run by SHA; after a Redis restart empties the script cache, the
``NOSCRIPT`` reply makes us load the script and run it again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from streamcart.bus.connection import is_cluster

Arg = str | int | float | bytes


class Script:
    """One Lua script, keys in KEYS and values in ARGV only."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, package: str = "streamcart.bus") -> None:
        self.name = name
        self.source = (files(package) / name).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, redis: Redis, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Arg]) -> None:
        """Add a call to a ``MULTI`` pipeline, with the script's source: an
        EVALSHA queued there would only meet NOSCRIPT at EXEC."""
        pipe.eval(self.source, len(keys), *keys, *args)

    async def run_many(
        self, redis: Redis, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        """Run the script once per (keys, args) in one pipelined round trip.

        A cluster client refuses scripts in a pipeline (their keys may live on
        different nodes), so there the calls go concurrently instead.
        """
        if not calls:
            return []
        if is_cluster(redis):
            return list(await asyncio.gather(*(self(redis, keys, args) for keys, args in calls)))
        try:
            return await self._pipelined(redis, calls)
        except NoScriptError:
            await redis.script_load(self.source)
            return await self._pipelined(redis, calls)

    async def _pipelined(
        self, redis: Redis, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return list(await pipe.execute())
