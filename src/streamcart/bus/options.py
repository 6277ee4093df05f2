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
    # Instances heartbeat this often; one silent for instance_ttl_ms is dead and
    # its pending entries are taken over at once, long before claim_timeout_ms.
    heartbeat_ms: int = 1_000
    instance_ttl_ms: int = 5_000
    batch_size: int = 100
    block_ms: int = 1_000
    stream_maxlen: int = 100_000
    done_ttl_s: int = 7 * 24 * 3600
    shutdown_grace_s: float = 10.0
    max_entry_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.inline_attempts < 1:
            raise ValueError("max_attempts and inline_attempts must be at least 1")
        if self.claim_timeout_ms < 100:
            raise ValueError("claim_timeout_ms must be at least 100")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
