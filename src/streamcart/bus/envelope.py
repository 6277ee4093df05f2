"""Stream entry fields <-> messages.

An entry's fields are plain strings so that ``redis-cli XADD`` can write one.
Everything that can be wrong with an entry is a :class:`MalformedEntryError`
(permanent: the entry goes to the dead-letter stream) with a message that
says what to fix.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec

from streamcart.bus.rawtext import is_decimal
from streamcart.errors import MalformedEntryError, SchemaError

MAX_ENTRY_BYTES = 1_000_000
MAX_NESTING = 64

# Fields the runtime reads; any other field is carried along untouched.
TYPE, DATA, ID, KEY, ATTEMPT = "type", "data", "id", "key", "attempt"
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
REPLY_TO, CORRELATION_ID, DEADLINE_MS = "reply_to", "correlation_id", "deadline_ms"

Fields = dict[str, str]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One message as read from a stream: the routing fields, raw JSON data."""

    type: str
    data: str
    id: str
    stream: str
    entry_id: str
    key: str | None = None
    attempt: int = 1
    fields: Fields = msgspec.field(default_factory=dict)

    @property
    def reply_to(self) -> str | None:
        """Where a request's answer goes (None: not a request)."""
        return self.fields.get(REPLY_TO)

    @property
    def deadline_ms(self) -> int | None:
        """The caller's deadline (Unix ms), if it gave one."""
        text = self.fields.get(DEADLINE_MS)
        return int(text) if text and is_decimal(text) else None


def new_message_id() -> str:
    """A unique, time-ordered message id (UUIDv7 layout, hex)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1))
    return f"{value:032x}"


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_json_bounds(text: str, *, max_bytes: int = MAX_ENTRY_BYTES) -> None:
    """Refuse JSON too large or too deeply nested to decode safely.

    Raises:
        MalformedEntryError: over ``max_bytes`` or nested deeper than
            ``MAX_NESTING``.
    """
    if len(text) > max_bytes:
        raise MalformedEntryError(f"data is {len(text)} bytes, over the limit of {max_bytes}")
    # Counting brackets runs in C; the exact scan only runs for suspicious input.
    if text.count("[") + text.count("{") > MAX_NESTING and _nesting_depth(text) > MAX_NESTING:
        raise MalformedEntryError(f"data is nested deeper than {MAX_NESTING} levels")


def parse_entry(
    stream: str, entry_id: str, fields: Fields | None, *, max_bytes: int = MAX_ENTRY_BYTES
) -> Envelope:
    """Read an entry's fields into an :class:`Envelope`, without decoding ``data``.

    Raises:
        MalformedEntryError: the entry is not a usable message.
    """
    if fields is None:
        raise MalformedEntryError("entry was deleted from the stream (trimmed) while pending")
    size = sum(map(len, fields.values()))  # field names are short; values carry the weight
    if size > max_bytes:
        raise MalformedEntryError(f"entry is {size} bytes, over the limit of {max_bytes}")
    message_type = fields.get(TYPE)
    if not message_type:
        raise MalformedEntryError(
            "entry has no `type` field; write entries as "
            "XADD <stream> '*' type <topic.name> data '<json object>'"
        )
    data = fields.get(DATA)
    if data is None:
        raise MalformedEntryError(f"entry of type {message_type!r} has no `data` field")
    attempt_text = fields.get(ATTEMPT, "1")
    try:
        attempt = int(attempt_text)
    except ValueError:
        raise MalformedEntryError(f"`attempt` must be an integer, got {attempt_text!r}") from None
    return Envelope(
        type=message_type,
        data=data,
        id=fields.get(ID) or entry_id,
        stream=stream,
        entry_id=entry_id,
        key=fields.get(KEY),
        attempt=attempt,
        fields=fields,
    )


class PayloadDecoder:
    """Decodes ``data`` into a handler's payload type, once per type."""

    __slots__ = ("_decoder", "payload_type")

    def __init__(self, payload_type: Any) -> None:
        self.payload_type = payload_type
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(payload_type)

    def decode(self, data: str) -> Any:
        """Raises:
        MalformedEntryError: ``data`` is not JSON (or too big or deep).
        SchemaError: it is JSON but not of the payload type.
        """
        check_json_bounds(data)
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise SchemaError(
                f"data does not match {_type_name(self.payload_type)}: {exc}"
            ) from None
        except msgspec.DecodeError as exc:
            raise MalformedEntryError(f"data is not valid JSON: {exc}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


_encoder = msgspec.json.Encoder()


def encode_data(data: Any) -> str:
    """A payload (Struct, dict, ...) as the JSON text of the `data` field."""
    if isinstance(data, str):
        return data
    return _encoder.encode(data).decode()


def build_fields(
    message_type: str,
    data: Any,
    *,
    message_id: str | None = None,
    key: str | None = None,
    extra: Fields | None = None,
) -> Fields:
    """The fields of a new entry; ``data`` is encoded to JSON unless already text."""
    fields: Fields = {
        TYPE: message_type,
        DATA: encode_data(data),
        ID: message_id or new_message_id(),
    }
    if key is not None:
        fields[KEY] = key
    if extra:
        fields.update(extra)
    return fields
