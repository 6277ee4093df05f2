"""Hooks a consumer calls as messages are handled, for metrics and the like.

An observer that raises is logged and otherwise ignored: observing must never
break handling.
"""

from __future__ import annotations

from typing import Protocol


class ConsumerObserver(Protocol):
    """What a consumer reports; every method must be cheap and must not block."""

    def handled(self, service: str, message_type: str, seconds: float) -> None: ...

    def failed(self, service: str, message_type: str) -> None: ...

    def retried(self, service: str, message_type: str) -> None: ...

    def dead_lettered(self, service: str, message_type: str) -> None: ...
