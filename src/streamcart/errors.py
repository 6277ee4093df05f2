"""The error hierarchy: one root, and permanent vs transient as types.

A handler raises a :class:`TransientError` (or any exception that is not a
:class:`PermanentError`) to have its message retried with backoff, and a
:class:`PermanentError` to send it to the dead-letter stream at once.
"""

from __future__ import annotations


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


class PermanentError(StreamcartError):
    """The message can never succeed: dead-letter it without retrying."""


class MalformedEntryError(PermanentError):
    """A stream entry that is not a valid envelope (fields, JSON, size, nesting)."""


class SchemaError(PermanentError):
    """The entry's `data` does not match the handler's message type."""


class UnknownTypeError(PermanentError):
    """No handler for this message type in a service inbox."""


class TransientError(StreamcartError):
    """A failure that may pass: retry the message with backoff.

    ``delay_ms`` asks for a specific wait before the next attempt.
    """

    def __init__(self, message: str = "", *, delay_ms: int | None = None) -> None:
        super().__init__(message)
        self.delay_ms = delay_ms


class ConflictError(TransientError):
    """A watched key changed while the handler ran; the handler runs again."""
