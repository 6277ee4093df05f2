"""Turning text into the tokens the word list and the model compare.

Abusers disguise words ("1d10t", "stuuupid", "$h1t"), so tokens are
lower-cased, digits and symbols inside a word are read as the letters they
imitate, and stretched letters are shrunk. Shrinking to two letters keeps
"free" and "good" intact while "freeeee" still becomes "free"; shrinking to
one catches "stuuupid". Both spellings are offered to the word list.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[\w$@]+")
_APOSTROPHES = re.compile(r"['\u2019]")
_LETTER = re.compile(r"[^\W\d_]")
_LEET = str.maketrans("013457$@", "oieastsa")
_RUN_OF_3 = re.compile(r"([^\W\d_])\1{2,}")
_RUN_OF_2 = re.compile(r"([^\W\d_])\1+")


def _unleet(token: str) -> str:
    """Symbols read as letters only inside a word: "1d10t" is "idiot", "100" stays."""
    return token.translate(_LEET) if _LETTER.search(token) else token


def tokens(text: str) -> list[str]:
    """Normalized tokens, stretched letters shrunk to two ("freeee" -> "free")."""
    words = _TOKEN.findall(_APOSTROPHES.sub("", text.lower()))
    return [_RUN_OF_3.sub(r"\1\1", _unleet(word)) for word in words]


def spellings(text: str) -> tuple[list[str], list[str]]:
    """The tokens as :func:`tokens` gives them, and with every run of a letter
    shrunk to one ("stuupid" -> "stupid"), for the word list."""
    shrunk = tokens(text)
    return shrunk, [_RUN_OF_2.sub(r"\1", token) for token in shrunk]


def ngrams(words: list[str], n: int) -> list[str]:
    """The runs of ``n`` consecutive words, joined by a space."""
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def features(text: str) -> list[str]:
    """The model's features: word unigrams and bigrams."""
    words = tokens(text)
    return [*words, *ngrams(words, 2)]
