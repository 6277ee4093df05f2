"""The error hierarchy: one root, and permanent vs transient as types.

A handler raises a :class:`TransientError` (or any exception that is not a
:class:`PermanentError`) to have its message retried with backoff, and a
:class:`PermanentError` to send it to the dead-letter stream at once.
"""

from __future__ import annotations

import math


class StreamcartError(Exception):
    """Root of every error streamcart raises on purpose."""


class ConfigurationError(StreamcartError):
    """A setting is missing or invalid; the message names it and the fix."""


class InvalidConfigError(ConfigurationError):
    """A config key that does not exist, or a value that its type refuses."""

    def __init__(self, message: str, *, scope: str, key: str) -> None:
        super().__init__(message)
        self.scope = scope
        self.key = key


class RedisUnavailableError(StreamcartError):
    """No Redis server could be reached or started."""


class CompanionError(StreamcartError):
    """A companion of a worker (heartbeat, config reload...) failed for good; the
    worker stopped, and its pool starts a new one. Its log says why."""


class LeaseLostError(StreamcartError):
    """A worker's consumer name was leased by another process (this one was
    paused past its lease); the worker stops, and its pool starts a new one."""


class PermanentError(StreamcartError):
    """The message can never succeed: dead-letter it without retrying."""


class MalformedEntryError(PermanentError):
    """A stream entry that is not a valid envelope (fields, JSON, size, nesting)."""


class SchemaError(PermanentError):
    """The entry's `data` does not match the handler's message type."""


class UnknownTypeError(PermanentError):
    """No handler for this message type in a service inbox."""


class CommitError(PermanentError):
    """A handler's writes cannot be committed (a key of the wrong type, say).

    The message says whether nothing was written, or which write failed after
    the message was marked done (the writes before it stay applied, and the
    message is never applied again).
    """


class TransientError(StreamcartError):
    """A failure that may pass: retry the message with backoff.

    ``delay_ms`` asks for a specific wait before the next attempt.
    """

    def __init__(self, message: str = "", *, delay_ms: int | None = None) -> None:
        super().__init__(message)
        self.delay_ms = delay_ms


class WriteConflictError(TransientError):
    """A watched key changed while the handler ran; the handler runs again."""


class DomainError(PermanentError):
    """An answer, not a malfunction: the request cannot be done as asked.

    Raised by a handler, it becomes an error reply to an RPC caller (and is not
    dead-lettered); the caller raises the same class. ``code`` names it on the
    wire and maps to an HTTP status at the gateway.
    """

    code = "invalid"


class NotFoundError(DomainError):
    code = "not_found"


class InvalidError(DomainError):
    code = "invalid"


class ConflictError(DomainError):
    code = "conflict"


class ForbiddenError(DomainError):
    code = "forbidden"


class UnavailableError(TransientError):
    """The service could not answer: nothing alive, its breaker open, or it kept failing."""

    code = "unavailable"


class CircuitOpenError(UnavailableError):
    """A circuit breaker refused the call without making it.

    An open breaker is the target being unavailable for a while, so it shares
    :class:`UnavailableError`'s wire code (503 at the gateway) and stays
    transient: a handler that lets it escape has its message retried no sooner
    than ``retry_after_s`` (carried as ``delay_ms``) instead of dead-lettered.
    """

    def __init__(self, target: str, *, retry_after_s: float, state: str = "open") -> None:
        retry_after_s = max(0.0, retry_after_s)
        super().__init__(
            f"{target} is unavailable: circuit {state.replace('_', '-')}, "
            f"retry in {retry_after_s:.1f} s",
            # Rounded first so float noise (3.2000000000000455 s) does not add a millisecond.
            delay_ms=math.ceil(round(retry_after_s * 1000, 3)),
        )
        self.target = target
        self.retry_after_s = retry_after_s


class RpcTimeoutError(TransientError):
    """No reply before the deadline; the request may still have been done."""

    code = "timeout"


class HandlerTimeoutError(TransientError):
    """A handler attempt ran past the service's ``handler_timeout_ms`` and was cancelled;
    nothing it did through the context is committed."""


class RemoteError(StreamcartError):
    """An error reply whose code this side does not know."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


_BY_CODE: dict[str, type[StreamcartError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        InvalidError,
        ConflictError,
        ForbiddenError,
        UnavailableError,
        RpcTimeoutError,
    )
}


def error_from_reply(code: str, message: str) -> StreamcartError:
    """The exception a caller raises for an error reply."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else RemoteError(code, message)
