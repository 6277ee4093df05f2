"""The envelope codec: entry fields to messages, and every way an entry is wrong."""

from __future__ import annotations

import json

import msgspec
import pytest

from streamcart.bus.envelope import (
    MAX_NESTING,
    PayloadDecoder,
    build_fields,
    check_json_bounds,
    new_message_id,
    parse_entry,
)
from streamcart.errors import MalformedEntryError, PermanentError, SchemaError


class Item(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    qty: int


def test_parse_reads_routing_fields_and_keeps_the_rest() -> None:
    fields = {"type": "order.placed", "data": "{}", "id": "m1", "key": "o1", "traceparent": "t"}
    env = parse_entry("sc:events:order", "1-0", fields)
    assert (env.type, env.id, env.key, env.attempt) == ("order.placed", "m1", "o1", 1)
    assert env.fields["traceparent"] == "t"


def test_an_entry_without_id_is_identified_by_its_stream_id() -> None:
    env = parse_entry("s", "1700000000000-3", {"type": "a.b", "data": "{}"})
    assert env.id == "1700000000000-3"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"data": "{}"}, "no `type`"),
        ({"type": "", "data": "{}"}, "no `type`"),
        ({"type": "a.b"}, "no `data`"),
        ({"type": "a.b", "data": "{}", "attempt": "two"}, "`attempt` must be an integer"),
        ({"type": "a.b", "data": "x" * 2_000_000}, "over the limit"),
        (None, "trimmed"),
    ],
)
def test_malformed_entries_are_permanent_errors_that_say_why(
    fields: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(MalformedEntryError, match=reason) as caught:
        parse_entry("s", "1-0", fields)
    assert isinstance(caught.value, PermanentError)


def test_the_missing_type_message_shows_how_to_write_an_entry() -> None:
    with pytest.raises(MalformedEntryError, match="XADD <stream> '\\*' type"):
        parse_entry("s", "1-0", {"data": "{}"})


def test_decoder_returns_the_typed_payload() -> None:
    assert PayloadDecoder(Item).decode('{"sku": "S1", "qty": 2}') == Item("S1", 2)


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        ("{not json", MalformedEntryError, "not valid JSON"),
        ('{"sku": "S1", "qty": "two"}', SchemaError, r"Expected `int`, got `str` - at `\$.qty`"),
        ('{"sku": "S1"}', SchemaError, "missing required field `qty`"),
        ('{"sku": "S1", "qty": 1, "price": 0}', SchemaError, "unknown field `price`"),
        ("[1, 2]", SchemaError, "Expected `object`, got `array`"),
    ],
)
def test_decoder_errors_name_the_problem(data: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        PayloadDecoder(Item).decode(data)


def test_absurd_nesting_is_refused_before_decoding() -> None:
    deep = "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    with pytest.raises(MalformedEntryError, match="nested deeper"):
        PayloadDecoder(dict).decode('{"a": ' + deep + "}")


def test_many_brackets_that_are_not_deep_are_fine() -> None:
    wide = json.dumps({"items": [[i] for i in range(500)], "text": "[[[[[[" * 50})
    check_json_bounds(wide)  # no error: wide is not deep, brackets in strings do not count


def test_build_fields_encodes_data_and_gives_a_unique_id() -> None:
    first = build_fields("order.placed", Item("S1", 2), key="o1")
    second = build_fields("order.placed", {"sku": "S1", "qty": 2})
    assert json.loads(first["data"]) == json.loads(second["data"]) == {"sku": "S1", "qty": 2}
    assert first["key"] == "o1" and "key" not in second
    assert first["id"] != second["id"]


def test_message_ids_are_unique_and_time_ordered() -> None:
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
