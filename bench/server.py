"""The Redis a benchmark runs against: the given URL, else a throwaway embedded one."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streamcart.bus.embedded import EmbeddedRedis
from streamcart.bus.embedded_cluster import EmbeddedCluster


def add_redis_option(parser: argparse.ArgumentParser, *, cluster: bool = False) -> None:
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("STREAMCART_BENCH_REDIS_URL"),
        help="a server to use (default: a throwaway embedded one, no persistence)",
    )
    if cluster:
        parser.add_argument(
            "--cluster",
            action="store_true",
            help="without --redis-url: a throwaway three-master Redis Cluster instead",
        )


@contextlib.contextmanager
def redis_for_bench(url: str | None, *, cluster: bool = False) -> Iterator[str]:
    """Yield ``url``, or the URL of a fresh embedded server (or cluster) stopped afterwards."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        if cluster:
            nodes = EmbeddedCluster(Path(tmp))
            try:
                yield nodes.start()
            finally:
                nodes.stop()
            return
        server = EmbeddedRedis(Path(tmp), appendonly=False)
        try:
            yield server.start(daemonize=False)
        finally:
            server.stop()
