"""Entry text that may hold any bytes.

Other producers than Python write to the streams, so a field name or value
may be any bytes. Every client the runtime opens decodes replies with the
``surrogateescape`` error handler: a byte that is not UTF-8 becomes a lone
surrogate instead of failing the whole reply, and is encoded back to the very
same byte on the way out. So a reply never fails to decode, a dead letter keeps
an entry's bytes exactly, and a replay sends the same bytes back; only the
entry itself is refused, by :func:`undecodable_reason`.
"""

from __future__ import annotations

from collections.abc import Mapping

ENCODING_ERRORS = "surrogateescape"
# An entry with more fields than this is refused: no message needs them, and a
# script that spreads them as arguments (``unpack``) fails on a few thousand.
MAX_FIELDS = 256
UNDECODABLE = "undecodable"


def is_utf8(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8 (holds no escaped byte)."""
    if text.isascii():  # the common case, checked in C without encoding
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def is_decimal(text: str) -> bool:
    """Whether ``int(text)`` reads ``text`` as ASCII digits: ``str.isdigit`` is
    also true of ``"²"``, which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def printable(text: str) -> str:
    """``text`` with each byte that was not UTF-8 written as ``\\xNN``."""
    if is_utf8(text):
        return text
    return text.encode("utf-8", ENCODING_ERRORS).decode("utf-8", "backslashreplace")


def undecodable_reason(fields: Mapping[str, str]) -> str | None:
    """Why an entry cannot be read as a message at all, or ``None`` if it can.

    The reason starts with ``undecodable``: the dead-letter reason of DESIGN
    section 3 for an entry that is not UTF-8 or has too many fields.
    """
    if len(fields) > MAX_FIELDS:
        return f"{UNDECODABLE}: the entry has {len(fields)} fields, over the limit of {MAX_FIELDS}"
    # The consume loop's case: all ASCII, told by one join in C rather than a loop.
    if "".join([*fields, *fields.values()]).isascii():
        return None
    for name, value in fields.items():
        if not is_utf8(name):
            return f"{UNDECODABLE}: field name {printable(name)!r} is not valid UTF-8"
        if not is_utf8(value):
            return f"{UNDECODABLE}: the value of field {name!r} is not valid UTF-8"
    return None


def printable_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """``fields`` fit to print or encode as JSON: bytes not UTF-8 as ``\\xNN``."""
    return {printable(name): printable(value) for name, value in fields.items()}
