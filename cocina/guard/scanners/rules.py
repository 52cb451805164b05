"""The operator's own rules: banned substrings, regular expressions, and a length limit in tokens."""

from __future__ import annotations

import re

from cocina.guard.scanners.base import Finding


class BannedSubstrings:
    """Case-insensitive substrings (one alternation, so a list of hundreds costs one pass)."""

    name = "banned_substrings"
    redacts = True

    def __init__(self, words: list[str]) -> None:
        words = [w for w in words if w]
        self._pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)
        self._empty = not words

    def find(self, text: str) -> list[Finding]:
        if self._empty:
            return []
        return [Finding("banned", m.start(), m.end()) for m in self._pattern.finditer(text)]


class RegexRules:
    """Regular expressions (Python syntax); each match is a finding."""

    name = "regex"
    redacts = True

    def __init__(self, patterns: list[str]) -> None:
        self._patterns = [re.compile(p) for p in patterns]

    def find(self, text: str) -> list[Finding]:
        found = []
        for pattern in self._patterns:
            found += [Finding("regex", m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
        return found


class TokenLimit:
    """Texts longer than `max_tokens`, estimated at four characters a token (the guard has no tokenizer; a
    language model's exact prompt length is also checked against its context when the request is planned)."""

    name = "token_limit"
    redacts = False

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def find(self, text: str) -> list[Finding]:
        estimate = (len(text) + 3) // 4
        return [Finding("too_long", 0, len(text), 1.0)] if estimate > self.max_tokens else []
