"""`streamcart config`: what it refuses is a usage error (exit 2), before touching Redis."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from streamcart.cli import main

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a usage error must not get that far
SHOP = "tests.shop:build"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--redis-url", NO_REDIS, "config", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["set", SHOP, "discount_pc", "5"], "did you mean 'discount_pct'?"),
        (["set", SHOP, "max_attempts", "lots"], "expected int, got 'lots'"),
        (["set", SHOP, "discount_pct", "95"], "(discount_pct must be between 0 and 90)"),
        (["set", SHOP, "claim_timeout_ms", "50"], "claim_timeout_ms must be at least 100"),
        (
            ["set", SHOP, "dedup_window_s", "0"],
            "'dedup_window_s' in service 'shop': expected int, got 0 "
            "(dedup_window_s must be at least 1)",
        ),
        (["set", "retry_max_ms", "0"], "got 0 (retry_max_ms must be at least 1)"),
        (["set", SHOP, "inline_attempts", "-2"], "(inline_attempts must be at least 1)"),
        (["set", "greeting", "hi"], "unknown config key 'greeting' for the global scope"),
        (["set", "nosuch", "max_attempts", "3"], "unknown service 'nosuch'"),
        (["set", "max_attempts"], "expected [SERVICE] KEY VALUE, got 1 argument(s)"),
        (["set", "a", "b", "c", "d"], "expected [SERVICE] KEY VALUE, got 4 argument(s)"),
        (["set"], "Missing argument '[SERVICE] KEY VALUE'"),
        (["get", SHOP, "greting"], "did you mean 'greeting'?"),
        (["get", "nosuch.module:svc", "max_attempts"], "cannot import 'nosuch.module'"),
        (["list", "nosuch"], "unknown service 'nosuch'"),
        (["history", "nosuch"], "unknown service 'nosuch'"),
        (["set", "gateway", "rate", "-1"], "rate must be"),
        (["set", "gateway", "burts", "10"], "did you mean 'burst'?"),
        (["set", "monitor", "lag", "many"], "expected int, got 'many'"),
        # No try at all would fail every payment for good.
        (["set", "payments", "charge_attempts", "0"], "got 0 (Expected `int` >= 1)"),
        (["set", "logistics", "stop_notice_after_ms", "0"], "got 0 (Expected `int` >= 1)"),
    ],
)
def test_refusals_exit_2_with_the_reason(args: list[str], hint: str) -> None:
    code, output = _invoke(*args)
    assert code == 2, output
    assert hint in " ".join(output.split())  # the message may be wrapped


def test_a_negative_number_is_a_value_not_an_option() -> None:
    code, output = _invoke("set", SHOP, "discount_pct", "-5")
    assert code == 2
    assert "got -5 (discount_pct must be between 0 and 90)" in " ".join(output.split())


def test_a_valid_value_gets_as_far_as_redis() -> None:
    code, output = _invoke("set", SHOP, "greeting", "hi")
    assert code == 1 and "redis:" in output


def test_help_names_the_commands() -> None:
    code, output = _invoke("--help")
    assert code == 0
    for command in ("get", "set", "unset", "list", "history"):
        assert command in output
