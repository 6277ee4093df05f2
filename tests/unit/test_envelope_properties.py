"""Properties of the envelope over arbitrary entries: whatever bytes, sizes,
nesting and field counts arrive, reading an entry either gives a message or a
dead-letter reason, and nothing on the way loses or changes a byte."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcart.bus.deadletter import dead_letter_fields, replay_fields
from streamcart.bus.delayed import decode_member, encode_member
from streamcart.bus.envelope import PayloadDecoder, parse_entry
from streamcart.bus.rawtext import ENCODING_ERRORS, undecodable_reason
from streamcart.errors import PermanentError


def _as_read(data: bytes) -> str:
    """Bytes as every runtime client hands them over."""
    return data.decode("utf-8", ENCODING_ERRORS)


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


texts = st.one_of(
    st.binary(max_size=64).map(_as_read),
    st.text(max_size=64),
    st.integers(0, 200).map(_deep),
    st.sampled_from(["", "{}", '{"name": "a"}', "null", "1e999", '"\\ud800"']),
)
names = st.one_of(st.sampled_from(["type", "data", "id", "key", "attempt"]), texts)
entries = st.dictionaries(names, texts, max_size=300)


class Job(msgspec.Struct):
    name: str


DECODER = PayloadDecoder(Job)


@settings(max_examples=400, deadline=None)
@given(entries)
def test_any_entry_is_a_message_or_a_reason_never_a_crash(fields: dict[str, str]) -> None:
    if undecodable_reason(fields) is not None:
        return  # dead-lettered as undecodable before anything reads it
    try:
        envelope = parse_entry("s", "1-0", fields)
        DECODER.decode(envelope.data)
    except PermanentError as exc:
        assert str(exc)  # a reason a person can read, for the dead letter
    for name, value in fields.items():  # what is left is text: safe to log, trace, encode
        name.encode()
        value.encode()


@settings(max_examples=200, deadline=None)
@given(entries)
def test_a_dead_letter_replays_the_same_bytes(fields: dict[str, str]) -> None:
    letter = dead_letter_fields(
        fields, error="e", attempts=1, stream="s", entry_id="1-0", service="x", at_ms=0
    )
    replayed = replay_fields(letter)
    original = {k: v for k, v in fields.items() if not k.startswith("dlq_") and k != "attempt"}
    assert {k: v for k, v in replayed.items() if k in original} == original


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(texts, texts, max_size=50))
def test_a_delayed_entry_comes_back_byte_for_byte(fields: dict[str, str]) -> None:
    assert decode_member(encode_member(fields)) == fields
