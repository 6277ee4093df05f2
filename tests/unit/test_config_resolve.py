"""Which config applies (defaults <- global <- service) and what a value may be."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.config.resolve import describe, effective, validate
from streamcart.errors import ConfigurationError, InvalidConfigError
from tests import shop
from tests.shop import Knobs

SHOP = shop.build()


# -- validate: what `streamcart config set` accepts ------------------------------
@pytest.mark.parametrize(
    ("service", "key", "text", "value"),
    [
        (None, "max_attempts", "3", 3),
        (SHOP, "max_attempts", "3", 3),
        (SHOP, "shutdown_grace_s", "3", 3.0),
        (SHOP, "handler_timeout_ms", "500", 500),
        (SHOP, "greeting", "hi there", "hi there"),
        (SHOP, "greeting", '"5"', "5"),
        # JSON that does not fit a str field is taken as the text typed.
        (SHOP, "greeting", "05", "05"),
        (SHOP, "greeting", "true", "true"),
        (SHOP, "discount_pct", "15", 15),
        (SHOP, "featured", '["sku-1", "sku-2"]', ["sku-1", "sku-2"]),
    ],
)
def test_a_value_is_read_as_json_else_as_text(
    service: Service | None, key: str, text: str, value: Any
) -> None:
    assert validate(service, key, text) == value


def test_an_unknown_key_names_the_valid_ones_and_a_close_match() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        validate(SHOP, "discount_pc", "5")
    message = str(caught.value)
    assert "unknown config key 'discount_pc' for service 'shop'" in message
    assert "did you mean 'discount_pct'?" in message
    assert "greeting" in message and "max_attempts" in message
    assert (caught.value.scope, caught.value.key) == ("shop", "discount_pc")


def test_the_global_scope_holds_only_service_options() -> None:
    with pytest.raises(InvalidConfigError, match="unknown config key 'greeting' for the global"):
        validate(None, "greeting", "hi")
    with pytest.raises(InvalidConfigError, match="did you mean 'max_attempts'"):
        validate(None, "max_attempt", "3")


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("max_attempts", "lots", "invalid value for 'max_attempts' in service 'shop': "
         "expected int, got 'lots'"),
        ("claim_timeout_ms", "1.5", "expected int, got 1.5"),
        ("featured", '[1, 2]', "expected list[str], got [1, 2] (Expected `str`, got `int` - at "
         "`$.featured[0]`)"),
        # ServiceOptions.__post_init__ raises ValueError; msgspec wraps it.
        ("claim_timeout_ms", "50", "expected int, got 50 (claim_timeout_ms must be at least 100)"),
        ("max_attempts", "0", "got 0 (max_attempts must be at least 1)"),
        ("dedup_window_s", "0", "got 0 (dedup_window_s must be at least 1)"),
        ("block_ms", "-5", "got -5 (block_ms must be at least 1)"),
        ("shutdown_grace_s", "-0.5", "got -0.5 (shutdown_grace_s must be at least 0)"),
        ("handler_timeout_ms", "0", "got 0 (handler_timeout_ms must be at least 1)"),
        ("handler_timeout_ms", "-5", "got -5 (handler_timeout_ms must be at least 1)"),
        # The settings' own __post_init__ runs too.
        ("discount_pct", "95", "expected int, got 95 (discount_pct must be between 0 and 90)"),
    ],
)  # fmt: skip
def test_an_invalid_value_names_the_key_the_type_and_the_value(
    key: str, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validate(SHOP, key, text)
    assert message in str(caught.value)


# -- effective: defaults <- global <- service ------------------------------------
def test_the_service_scope_wins_over_global_which_wins_over_defaults() -> None:
    options, knobs = effective(
        SHOP,
        {"max_attempts": 4, "batch_size": 7},
        {"max_attempts": 2, "greeting": "hey", "discount_pct": 10},
    )
    assert options.max_attempts == 2  # service over global
    assert options.batch_size == 7  # global over default
    assert options.block_ms == shop.OPTIONS.block_ms  # the service's own declared default
    assert knobs == Knobs(greeting="hey", discount_pct=10)


def test_a_global_key_also_applies_to_a_settings_field_of_that_name() -> None:
    class Tuning(msgspec.Struct, frozen=True):
        batch_size: int = 1

    service = Service("tuned", settings=Tuning)
    options, tuning = effective(service, {"batch_size": 9}, {})
    assert options.batch_size == 9 and tuning == Tuning(batch_size=9)


def test_without_a_service_the_global_scope_lays_over_the_library_defaults() -> None:
    options, settings = effective(None, {"max_attempts": 8}, {})
    assert options == ServiceOptions(max_attempts=8) and settings is None


def test_stored_values_that_do_not_fit_are_reported_and_the_rest_applies() -> None:
    refused: list[InvalidConfigError] = []
    options, knobs = effective(
        SHOP,
        {"max_attempts": 0, "batch_size": 9, "no_such": 1},
        {"discount_pct": 99, "greeting": "yo", "claim_timeout_ms": "soon"},
        on_invalid=refused.append,
    )
    assert options == msgspec.structs.replace(shop.OPTIONS, batch_size=9)
    assert knobs == Knobs(greeting="yo")
    assert sorted((e.scope, e.key) for e in refused) == [
        ("global", "max_attempts"),
        ("global", "no_such"),
        ("shop", "claim_timeout_ms"),
        ("shop", "discount_pct"),
    ]


def test_without_a_handler_the_first_invalid_stored_value_is_raised() -> None:
    with pytest.raises(InvalidConfigError, match="'discount_pct' in service 'shop'"):
        effective(SHOP, {}, {"discount_pct": 99})


def test_describe_lists_every_key_with_its_source() -> None:
    rows = describe(
        SHOP, {"batch_size": 9, "max_attempts": 4}, {"max_attempts": 2, "greeting": "yo"}
    )
    by_key = {row.key: (row.value, row.source) for row in rows}
    assert by_key["max_attempts"] == (2, "service")
    assert by_key["batch_size"] == (9, "global")
    assert by_key["block_ms"] == (shop.OPTIONS.block_ms, "default")
    assert by_key["greeting"] == ("yo", "service")
    assert by_key["discount_pct"] == (0, "default")
    assert set(by_key) == set(ServiceOptions.__struct_fields__) | set(Knobs.__struct_fields__)


def test_describe_shows_a_refused_value_as_not_applied() -> None:
    rows = describe(SHOP, {"batch_size": 9}, {"batch_size": -1}, on_invalid=lambda error: None)
    assert {row.key: (row.value, row.source) for row in rows}["batch_size"] == (9, "global")


# -- declaring settings ------------------------------------------------------------
def test_settings_must_be_a_struct_buildable_from_defaults() -> None:
    class Required(msgspec.Struct):
        rate: int

    with pytest.raises(ConfigurationError, match="give every field a default"):
        Service("strict", settings=Required)
    with pytest.raises(ConfigurationError, match=r"must be a msgspec\.Struct type"):
        Service("strict", settings=dict)  # type: ignore[arg-type]
