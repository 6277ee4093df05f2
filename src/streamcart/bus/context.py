"""What a handler gets besides its payload: its effects are collected here.

Writes go through ``ctx.tx`` and events through ``ctx.publish`` / ``ctx.send``;
the runtime commits them together with the message's idempotency marker in
one script, or not at all (see :mod:`streamcart.bus.commit`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from streamcart.bus.connection import transaction
from streamcart.bus.envelope import Envelope, Fields, build_fields
from streamcart.bus.keys import Keys
from streamcart.bus.rpc import RpcClient
from streamcart.errors import ConfigurationError
from streamcart.telemetry import tracing

if TYPE_CHECKING:
    from streamcart.bus.service import Service

Op = tuple[str, tuple[Any, ...], dict[str, Any]]


class Tx:
    """Records Redis writes to run in the handler's commit transaction.

    Any redis-py command works (``ctx.tx.hset(...)``, ``ctx.tx.incrby(...)``);
    its first argument must be a key of the service's own hash slot, so the
    transaction stays in one Redis Cluster slot.
    """

    __slots__ = ("_tag", "ops")

    def __init__(self, tag: str) -> None:
        self._tag = tag
        self.ops: list[Op] = []

    def __getattr__(self, command: str) -> Callable[..., Tx]:
        if command.startswith("_") or not callable(getattr(Pipeline, command, None)):
            raise AttributeError(f"Tx has no Redis command {command!r}")

        def record(key: str, *args: Any, **kwargs: Any) -> Tx:
            if not key.startswith(self._tag):
                raise ConfigurationError(
                    f"tx.{command}({key!r}): transactional writes must use keys of the "
                    f"service's own slot; build them with ctx.key(...)"
                )
            self.ops.append((command, (key, *args), kwargs))
            return self

        return record


class Outgoing:
    """A message a handler emitted, to be published when the handler commits
    (``delay_ms`` after that, when given)."""

    __slots__ = ("delay_ms", "fields", "stream")

    def __init__(self, stream: str, fields: Fields, delay_ms: int = 0) -> None:
        self.stream = stream
        self.fields = fields
        self.delay_ms = delay_ms


class Context:
    """The handler's view of the world for one message."""

    __slots__ = (
        "_limit_ms",
        "_tx",
        "config",
        "keys",
        "logger",
        "message",
        "outgoing",
        "pipe",
        "redis",
        "rpc",
        "service",
    )

    def __init__(
        self,
        service: Service,
        message: Envelope,
        redis: Redis,
        keys: Keys,
        logger: logging.Logger,
        *,
        config: Any = None,
        rpc: RpcClient | None = None,
        deadline_ms: int | None = None,
    ) -> None:
        self.service = service
        self.message = message
        self.redis = redis
        self.keys = keys
        self.logger = logger
        # The service's settings instance as of this message (hot-reloaded
        # between messages, never during one); None when it declares none.
        self.config = config
        self.rpc = rpc
        self._limit_ms = deadline_ms  # the handler's time limit (Unix ms)
        self.outgoing: list[Outgoing] = []
        # Holds the connection of a WATCH, from ctx.watch() to the commit.
        self.pipe: Pipeline | None = None
        self._tx: Tx | None = None

    @property
    def deadline_ms(self) -> int | None:
        """When this attempt is cut off (Unix ms): the message's deadline or the
        handler's time limit, the earlier; nested calls end by then too."""
        deadline = self.message.deadline_ms
        if self._limit_ms is None:
            return deadline
        return self._limit_ms if deadline is None else min(deadline, self._limit_ms)

    @property
    def tx(self) -> Tx:
        """Writes committed atomically with the message's acknowledgement."""
        if self._tx is None:
            self._tx = Tx(self.keys.service_tag(self.service.name))
        return self._tx

    @property
    def has_effects(self) -> bool:
        return bool(self.outgoing or (self._tx is not None and self._tx.ops))

    def key(self, *parts: str) -> str:
        """A key in this service's own hash slot."""
        return self.keys.state(self.service.name, *parts)

    async def watch(self, *keys: str) -> None:
        """Fail the commit (and run the handler again) if these keys change
        before it: optimistic concurrency for read-then-write handlers.

        Call it before reading the keys.
        """
        tag = self.keys.service_tag(self.service.name)
        strays = [key for key in keys if not key.startswith(tag)]
        if strays:
            # The transaction would span slots: refused here, not only on a cluster.
            raise ConfigurationError(
                f"watch({', '.join(map(repr, strays))}): watched keys must be keys of the "
                f"service's own slot; build them with ctx.key(...)"
            )
        if self.pipe is None:
            # On a cluster: a connection to the node of the service's slot.
            self.pipe = await transaction(self.redis, self.keys.outbox(self.service.name))
        if keys:
            await self.pipe.watch(*keys)

    def publish(self, message_type: str, data: Any, *, key: str | None = None) -> None:
        """Emit an event to its topic stream, once the handler commits."""
        self._emit(message_type, data, key, to=None)

    def send(self, service: str, message_type: str, data: Any, *, key: str | None = None) -> None:
        """Send a command to one service's inbox, once the handler commits."""
        self._emit(message_type, data, key, to=service)

    def send_later(
        self, service: str, message_type: str, data: Any, *, delay_ms: int, key: str | None = None
    ) -> None:
        """Send a command to ``service`` ``delay_ms`` after the handler commits
        (by the Redis clock); like every emitted message, only if it commits."""
        self._emit(message_type, data, key, to=service, delay_ms=max(0, delay_ms))

    def _emit(
        self, message_type: str, data: Any, key: str | None, *, to: str | None, delay_ms: int = 0
    ) -> None:
        stream = self.keys.destination(message_type, to)
        fields = build_fields(message_type, data, key=key)
        tracing.sending(fields, message_type, stream)
        self.outgoing.append(Outgoing(stream, fields, delay_ms))

    async def call(
        self,
        target: str,
        data: Any = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - it becomes the request's deadline
        response_type: Any = Any,
    ) -> Any:
        """Call ``service.method`` and return its reply; never past this
        message's own deadline or the handler's time limit, so a nested call
        cannot outlive its caller.

        Raises:
            ConfigurationError: the context has no RPC client (a bare test context).
            RpcTimeoutError, NotFoundError, InvalidError, ConflictError,
            ForbiddenError, UnavailableError: as :meth:`RpcClient.call`.
        """
        if self.rpc is None:
            raise ConfigurationError("this context has no RPC client to call other services")
        return await self.rpc.call(
            target,
            data,
            timeout=timeout,
            deadline_ms=self.deadline_ms,
            response_type=response_type,
        )
