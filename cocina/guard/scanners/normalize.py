"""Invisible characters out, then NFKC: what every other scanner reads.

Unicode tag characters (U+E0000–E007F, which can spell a whole hidden instruction), zero-width and other format
characters (category Cf: ZWSP, ZWJ, bidi overrides, soft hyphen), variation selectors and the Hangul fillers all
render as nothing, and adaptive attacks use them to split keywords so detectors miss them (arXiv 2504.11168).
They are removed first; NFKC then folds compatibility forms (full-width letters, ligatures, circled letters)
into plain ones. Line breaks and tabs are kept.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

_EXTRA = (0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F)


@functools.cache
def _table() -> dict[int, None]:
    drop: dict[int, None] = {}
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)) == "Cf":
            drop[cp] = None
    for lo, hi in ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF), (0xE0000, 0xE007F)):
        for cp in range(lo, hi + 1):
            drop[cp] = None
    for cp in _EXTRA:
        drop[cp] = None
    return drop


def strip_invisible(text: str) -> tuple[str, int]:
    """The text without invisible characters, and how many were removed."""
    if text.isascii():
        return text, 0
    out = text.translate(_table())
    return out, len(text) - len(out)


def normalize(text: str) -> tuple[str, int]:
    """Invisible characters stripped, then NFKC; returns the text and how many characters were stripped."""
    stripped, removed = strip_invisible(text)
    if stripped.isascii():
        return stripped, removed
    return unicodedata.normalize("NFKC", stripped), removed


def warm() -> None:
    """Build the character table now (about a second) rather than in the first request."""
    _table()
