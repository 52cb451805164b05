"""What a scanner is: something that finds spans (or scores a whole text), with an action chosen per model.

A scanner's `find(text)` returns `Finding`s: spans to redact (secrets, PII, banned words) or one finding over
the whole text with a score (the injection detector). The pipeline (`pipeline.py`) applies each scanner's action
— `block`, `redact` or `log` — and records a `Verdict` per scanner with the time it took.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Action(enum.StrEnum):
    """What a scanner's finding does: refuse the request, replace the span, or only record it."""

    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"


@dataclass(frozen=True)
class Finding:
    """A span of the text (start, end) of some `kind` (e.g. `email`, `aws_key`), with a score in 0..1."""

    kind: str
    start: int
    end: int
    score: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """One scanner's result on one text: whether it flagged it, what was done, how long it took."""

    scanner: str
    action: Action
    flagged: bool
    kinds: tuple[str, ...] = ()
    score: float = 0.0
    time_ms: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "scanner": self.scanner,
            "action": self.action.value,
            "flagged": self.flagged,
            "kinds": list(self.kinds),
            "score": round(self.score, 3),
            "time_ms": round(self.time_ms, 3),
        }


class Scanner(Protocol):
    """A named detector. `redacts` says whether its findings are spans that can be replaced."""

    name: str
    redacts: bool

    def find(self, text: str) -> list[Finding]: ...
