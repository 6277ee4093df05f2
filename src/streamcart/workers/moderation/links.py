"""Finding links in text, including the disguised ones spammers write.

Bare domains are recognized only with a known top-level domain written in
one case, so "3.5mm", "v2.0", "e.g." or a missing space ("great.Top quality")
are not links; "example dot com", "example[.]com" and "DEALS.COM" are.
"""

from __future__ import annotations

import re

_TLDS = (
    "com|net|org|info|biz|io|co|me|ly|xyz|top|club|shop|store|online|site|app|dev|link|"
    "click|live|vip|cn|ru|uk|de|fr|us|tk|ml|ga|cf|gq"
)
# A separator standing in for the dot: "." / " dot " / "[.]" / "(dot)" / "{dot}".
_DOT = r"(?:\.|\s+dot\s+|\s*[\[({]\s*(?:\.|dot)\s*[\])}]\s*)"
_LINK = re.compile(
    rf"""
    https?://\S+                                   # a URL with its scheme
    | \bwww{_DOT}\S+                               # www.anything
    | \b[a-z0-9][a-z0-9-]*(?:{_DOT}[a-z0-9-]+)*    # bare or disguised domain name
      {_DOT}(?-i:{_TLDS}|{_TLDS.upper()})\b(?:/\S*)?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_TRAILING = ".,;:!?)]}'\""


def find_links(text: str) -> list[str]:
    """Every link in ``text``, as written, without trailing punctuation."""
    return [match.group().rstrip(_TRAILING) for match in _LINK.finditer(text)]


def without_links(text: str) -> str:
    """``text`` with every link blanked out."""
    return _LINK.sub(" ", text)
