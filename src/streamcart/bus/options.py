"""The runtime settings of one service, with their defaults."""

from __future__ import annotations

import msgspec


class ServiceOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a service's workers read, retry and give up.

    Attempts count handler invocations: ``inline_attempts`` of them run back
    to back in the worker (short backoff); later ones come back through the
    service inbox after an exponential backoff with full jitter, so a waiting
    retry never holds a worker.
    """

    max_attempts: int = 5
    inline_attempts: int = 2
    retry_initial_ms: int = 100
    retry_max_ms: int = 60_000
    # A message delivered more often than this (worker crashes) is dead-lettered.
    max_deliveries: int = 10
    # Pending entries idle this long belong to a dead consumer and are reclaimed.
    claim_timeout_ms: int = 30_000
    # A handler attempt still running after this fails as a transient error.
    handler_timeout_ms: int = 60_000
    # Instances heartbeat this often; one silent for instance_ttl_ms is dead and
    # its pending entries are taken over at once, long before claim_timeout_ms.
    heartbeat_ms: int = 1_000
    instance_ttl_ms: int = 5_000
    batch_size: int = 100
    block_ms: int = 1_000
    stream_maxlen: int = 100_000
    # A message id is not applied twice within this window, nor while its entry
    # is pending or its retry is scheduled; after it, it may be (docs/contract.md).
    dedup_window_s: int = 3600
    shutdown_grace_s: float = 10.0
    max_entry_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        """Raises:
        ValueError: an option outside its range (see :data:`LEAST`); the config
            store refuses such a value when it is set, naming the key and range.
        """
        for name, least in LEAST.items():
            value = getattr(self, name)
            if value < least:
                raise ValueError(f"{name} must be at least {least}")


# The least value of each option. Zero or negative timeouts, attempts, sizes
# and windows mean nothing useful (a zero TTL even made every commit fail).
LEAST: dict[str, int | float] = {
    "max_attempts": 1,
    "inline_attempts": 1,
    "retry_initial_ms": 1,
    "retry_max_ms": 1,
    "max_deliveries": 1,
    "claim_timeout_ms": 100,
    "handler_timeout_ms": 1,
    "heartbeat_ms": 1,
    "instance_ttl_ms": 1,
    "batch_size": 1,
    "block_ms": 1,
    "stream_maxlen": 1,
    "dedup_window_s": 1,
    "shutdown_grace_s": 0,
    "max_entry_bytes": 1,
}
