"""What an error from Redis asks of a worker: wait, or rebuild its groups.

Almost nothing Redis answers is a reason for a worker to exit: a failover
(READONLY), a long script (BUSY), a restart replaying its log (LOADING), a
full disk (MISCONF), a permission an operator is still granting (NOPERM) or a
cluster reshaping itself (CLUSTERDOWN, TRYAGAIN, MASTERDOWN) all pass. A
worker that exited on them would only come back to the same answer, every
pool child at once. So loops wait with backoff, say what they wait for, and
go on; a deleted stream (UNBLOCKED, NOGROUP) gets its group created again.
"""

from __future__ import annotations

import re

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

_MEANINGS = {
    "READONLY": "the server is a read-only replica (a failover?)",
    "BUSY": "the server is busy running a script",
    "LOADING": "the server is loading its data set",
    "MASTERDOWN": "the replica has lost its master",
    "MISCONF": "the server cannot persist (disk full?) and refuses writes",
    "NOPERM": "this Redis user lacks a permission",
    "OOM": "the server is out of memory",
    "CLUSTERDOWN": "the cluster is down",
    "TRYAGAIN": "the cluster is moving a slot",
    "UNBLOCKED": "the stream was deleted",
    "NOGROUP": "the consumer group or its stream is gone",
}
_STREAM_GONE = ("UNBLOCKED", "NOGROUP")


_IN_PIPELINE = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: \(?'?", re.S)


def _code(exc: BaseException) -> str:
    # redis-py strips the code of the replies it maps to a class, and keeps it
    # in status_code; a pipeline's error has its text behind a preamble.
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    return _IN_PIPELINE.sub("", str(exc), count=1).partition(" ")[0]


def is_passing(exc: RedisError) -> bool:
    """Whether ``exc`` is a state of the server that passes (try again later),
    rather than a refusal of the command itself (WRONGTYPE, a bad argument)."""
    return _code(exc) in _MEANINGS or isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def stream_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says a stream (or its group) no longer exists: create it again."""
    return _code(exc) in _STREAM_GONE


def waiting_reason(exc: RedisError) -> str:
    """What a loop that got ``exc`` is waiting for, in words, with the reply itself."""
    code = _code(exc)
    if code not in _MEANINGS and isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return f"redis unreachable ({exc})"
    meaning = _MEANINGS.get(code, "redis answers with an error")
    reply = str(exc)
    return f"{meaning} ({reply if reply.startswith(code) else f'{code} {reply}'})"
