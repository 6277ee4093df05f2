"""The Redis a benchmark runs against: the given URL, else a throwaway embedded one."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streamcart.bus.embedded import EmbeddedRedis


def add_redis_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("STREAMCART_BENCH_REDIS_URL"),
        help="a server to use (default: a throwaway embedded one, no persistence)",
    )


@contextlib.contextmanager
def redis_for_bench(url: str | None) -> Iterator[str]:
    """Yield ``url``, or the URL of a fresh embedded server stopped afterwards."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False)
        try:
            yield server.start(daemonize=False)
        finally:
            server.stop()
