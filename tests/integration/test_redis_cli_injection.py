"""Entries written by an operator with plain ``redis-cli``: the valid ones are
applied exactly once, every malformed one is dead-lettered at once with its
reason and its original fields, and the worker keeps running."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import is_cluster_url
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    pending,
    run_process,
    wait_applied,
    wait_for,
)

REDIS_CLI = shutil.which("redis-cli")
FAST_COUNTER = "tests.integration.services:fast_counter"
VALID = 150
MALFORMED = 50


@dataclass(frozen=True)
class Case:
    """A kind of entry: its fields after ``case``, and what ``dlq_error`` must say."""

    kind: str
    fields: tuple[str, ...]
    reason: str = ""


def _deep(levels: int) -> str:
    return '{"name": "deep", "by": ' + "[" * levels + "1" + "]" * levels + "}"


MALFORMED_CASES = [
    Case("no_type", ("data", '{"name": "a"}'), "has no `type` field"),
    Case("no_data", ("type", "counter.increment"), "has no `data` field"),
    Case("not_json", ("type", "counter.increment", "data", "{name: a"), "not valid JSON"),
    Case("array", ("type", "counter.increment", "data", "[1, 2, 3]"), "got `array`"),
    Case(
        "wrong_types",
        ("type", "counter.increment", "data", '{"name": 7, "by": "two"}'),
        "SchemaError",
    ),
    Case("unknown_type", ("type", "counter.nope", "data", '{"name": "a"}'), "UnknownTypeError"),
    Case("too_deep", ("type", "counter.increment", "data", _deep(100)), "nested deeper than 64"),
    # Written with ``redis-cli -x``: an argument this big does not fit in argv.
    Case("oversized", ("type", "counter.increment", "data"), "over the limit"),
]
OVERSIZED_DATA = json.dumps({"name": "big", "pad": "x" * 1_100_000})


def _quote(arg: str) -> str:
    """An argument as redis-cli reads it from a line of standard input."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cli_base(url: str) -> list[str]:
    assert REDIS_CLI is not None
    parsed = urlparse(url)
    argv = [REDIS_CLI, "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379)]
    if is_cluster_url(url):
        argv.append("-c")  # follow MOVED redirections; a cluster has only database 0
    elif parsed.path.strip("/"):
        argv += ["-n", parsed.path.strip("/")]
    if parsed.password:
        argv += ["-a", parsed.password, "--no-auth-warning"]
    return argv


async def _run_cli(argv: list[str], stdin: str) -> list[str]:
    code, out, err = await run_process(argv, stdin=stdin.encode(), within=30)
    assert code == 0, err
    # On a cluster, redis-cli -c announces each redirection it follows on stdout.
    return [word for line in out.splitlines() if not line.startswith("->") for word in line.split()]


async def _inject(base: list[str], inbox: str, entries: list[tuple[str, ...]]) -> list[str]:
    """Write ``entries`` in order with redis-cli; returns the entry ids it printed.

    Runs of ordinary entries go as command lines on standard input; an oversized
    one goes alone with ``-x``, its data read from standard input.
    """
    written: list[str] = []
    lines: list[str] = []
    for entry in [*entries, None]:
        if entry is not None and entry[1] != "oversized":
            lines.append(" ".join(["XADD", _quote(inbox), "*", *map(_quote, entry)]))
            continue
        if lines:
            written += await _run_cli(base, "\n".join(lines) + "\n")
            lines = []
        if entry is not None:
            written += await _run_cli([*base, "-x", "XADD", inbox, "*", *entry], OVERSIZED_DATA)
    return written


def _plan(rng: random.Random) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    """200 entries in a shuffled order, and the counts the valid ones add up to."""
    entries: list[tuple[str, ...]] = []
    expected: dict[str, int] = {}
    for i in range(VALID):
        name, by = f"k{i % 6}", 1 + i % 4
        expected[name] = expected.get(name, 0) + by
        fields: tuple[str, ...] = (
            "case",
            "valid",
            "type",
            "counter.increment",
            "data",
            json.dumps({"name": name, "by": by}),
        )
        # A third carry the publisher's id; the rest use their stream entry id.
        entries.append((*fields, "id", f"cli-{i}") if i % 3 == 0 else fields)
    for i in range(MALFORMED):
        case = MALFORMED_CASES[i % len(MALFORMED_CASES)]
        entries.append(("case", case.kind, *case.fields))
    rng.shuffle(entries)
    return entries, expected


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not on PATH")
async def test_redis_cli_entries_are_applied_or_dead_lettered_and_the_worker_survives(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """200 entries from redis-cli, 50 of them malformed in eight ways, while a
    worker runs: valid ones applied once, malformed ones in the DLQ with reason
    and original fields, nothing left pending, the worker still alive."""
    keys = CounterKeys(namespace)
    entries, expected_counts = _plan(random.Random(20))

    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)
        await worker.consumer_name()

        written = await _inject(_cli_base(redis_url), keys.inbox, entries)
        assert len(written) == VALID + MALFORMED, f"redis-cli did not add every entry: {written}"

        async def all_dead_lettered() -> bool:
            return int(await real_redis.xlen(keys.dlq)) >= MALFORMED

        await wait_for(all_dead_lettered, within=30, what="50 dead letters", context=workers.tails)
        applied = await wait_applied(real_redis, keys, VALID, within=30, context=workers.tails)
        assert worker.alive(), worker.tail()

    inbox = dict(await real_redis.xrange(keys.inbox))
    assert sorted(inbox) == sorted(written)
    valid = {entry_id: f for entry_id, f in inbox.items() if f["case"] == "valid"}
    malformed = {entry_id: f for entry_id, f in inbox.items() if f["case"] != "valid"}
    assert_each_applied_once(applied, {f.get("id", entry_id) for entry_id, f in valid.items()})
    counts = await real_redis.hgetall(keys.counts)
    assert counts == {name: str(n) for name, n in expected_counts.items()}
    assert await pending(real_redis, keys.inbox, keys.group) == 0

    reasons = {case.kind: case.reason for case in MALFORMED_CASES}
    dead = await real_redis.xrange(keys.dlq)
    assert sorted(f["dlq_id"] for _, f in dead) == sorted(malformed)
    for _, fields in dead:
        original = malformed[fields["dlq_id"]]
        kept = {k: v for k, v in fields.items() if not k.startswith("dlq_")}
        assert kept == original, f"{original['case']}: fields changed in the DLQ"
        assert reasons[original["case"]] in fields["dlq_error"], (original["case"], fields)
        assert fields["dlq_stream"] == keys.inbox
        assert fields["dlq_service"] == "counter"
    assert {f["case"] for _, f in dead} == set(reasons)
