"""Text that may hold any bytes: what counts as undecodable, and how it prints."""

from __future__ import annotations

from streamcart.bus.rawtext import MAX_FIELDS, printable, printable_fields, undecodable_reason


def _escaped(data: bytes) -> str:
    """``data`` as a client decoding with surrogateescape hands it over."""
    return data.decode("utf-8", "surrogateescape")


def test_valid_text_in_any_script_is_decodable() -> None:
    assert undecodable_reason({"type": "a.b", "data": '{"name": "苹果 ünïcode 🍎"}'}) is None


def test_bytes_that_are_not_utf8_in_a_name_or_value_are_undecodable() -> None:
    by_value = undecodable_reason({"type": "a.b", "data": _escaped(b"\xff\xfe")})
    by_name = undecodable_reason({_escaped(b"\xc3("): "x", "type": "a.b"})
    assert by_value == "undecodable: the value of field 'data' is not valid UTF-8"
    assert by_name == "undecodable: field name '\\\\xc3(' is not valid UTF-8"


def test_too_many_fields_are_undecodable() -> None:
    fields = {f"f{n}": "v" for n in range(MAX_FIELDS + 1)}
    reason = undecodable_reason(fields)
    assert reason is not None and reason.startswith("undecodable: the entry has 257 fields")
    assert undecodable_reason(dict(list(fields.items())[:MAX_FIELDS])) is None


def test_printable_writes_each_bad_byte_escaped_and_keeps_the_rest() -> None:
    assert printable(_escaped(b"ok \xff \xc3\xa9")) == "ok \\xff é"
    assert printable_fields({_escaped(b"\x80"): "v"}) == {"\\x80": "v"}
    assert printable("plain") == "plain"
