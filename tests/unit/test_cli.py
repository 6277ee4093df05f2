"""Usage errors exit with code 2 and a hint, before touching Redis."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from streamcart.cli import main

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a usage error must not get that far


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["publish", "counter.increment", "{oops"], "not JSON"),
        (["publish", "counter.increment", "[1, 2]"], "must be a JSON object"),
        (["publish", "increment", "{}"], "must look like 'topic.name'"),
        (["publish", "a.b", "{}", "--delay-ms", "-5"], "-5 is not in the range x>=0"),
        (["worker", "nosuch"], "unknown service 'nosuch'"),
        (["worker", "nosuch.module:svc"], "cannot import 'nosuch.module'"),
        (["worker", "counter", "--processes", "0"], "0 is not in the range"),
        (["dlq", "list"], "Missing argument 'SERVICE'"),
    ],
)
def test_usage_errors_exit_2_with_a_hint(args: list[str], hint: str) -> None:
    result = CliRunner().invoke(main, ["--redis-url", NO_REDIS, *args])
    assert result.exit_code == 2, result.output
    assert hint in result.output


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("worker", "publish", "dlq", "redis", "up"):
        assert command in result.output


def test_an_unreachable_redis_is_a_failure_with_exit_1() -> None:
    result = CliRunner().invoke(main, ["--redis-url", NO_REDIS, "dlq", "list", "counter"])
    assert result.exit_code == 1
    assert "redis:" in result.output
