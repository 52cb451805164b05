"""One pipeline for every scanner: normalise, then each scanner with its action, timed, with a verdict each.

`Pipeline.scan(text)` returns the text to use (normalised, with redactions) and the verdicts. `StreamScanner`
does the same for output that arrives in pieces: it holds back the last `hold` characters (more while a finding
crosses that point: an e-mail whose domain may still be growing) so that a secret split across two chunks is
still redacted, and it reports a block as soon as a blocking scanner fires on what it holds plus the last `hold`
characters it released. Findings longer than `hold` can be missed when split; `hold_chars` in the guard file
sets it (64 by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cocina.guard.scanners.base import Action, Finding, Scanner, Verdict
from cocina.guard.scanners.normalize import normalize


@dataclass(frozen=True)
class Step:
    """A scanner with the action its findings get."""

    scanner: Scanner
    action: Action


@dataclass
class ScanResult:
    text: str
    verdicts: list[Verdict] = field(default_factory=list)
    blocked_by: str | None = None
    redacted: bool = False
    stripped: int = 0  # invisible characters removed


def redaction(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _apply(text: str, findings: list[Finding]) -> str:
    """Replace each finding's span by its redaction mark; overlapping spans are merged (their union is
    redacted, under the first one's kind), so no part of either shows."""
    merged: list[list[Any]] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], f.end)
        else:
            merged.append([f.start, f.end, f.kind])
    out, pos = [], 0
    for start, end, kind in merged:
        out.append(text[pos:start])
        out.append(redaction(kind))
        pos = end
    out.append(text[pos:])
    return "".join(out)


class Pipeline:
    """Scanners in order, each with its action; `normalize` first unless turned off."""

    def __init__(self, steps: list[Step], *, normalize_first: bool = True) -> None:
        self.steps = steps
        self.normalize_first = normalize_first

    def scan(self, text: str) -> ScanResult:
        result = ScanResult(text)
        if self.normalize_first:
            t0 = time.perf_counter()
            result.text, result.stripped = normalize(text)
            result.verdicts.append(
                Verdict("normalize", Action.REDACT, result.stripped > 0, ("invisible",) if result.stripped else (),
                        float(result.stripped > 0), (time.perf_counter() - t0) * 1000)
            )
            result.redacted = result.text != text
        for step in self.steps:
            t0 = time.perf_counter()
            findings = step.scanner.find(result.text)
            flagged = bool(findings)
            if flagged and step.action is Action.REDACT and step.scanner.redacts:
                result.text = _apply(result.text, findings)
                result.redacted = True
            elif flagged and step.action is Action.BLOCK and result.blocked_by is None:
                result.blocked_by = step.scanner.name
            kinds = tuple(sorted({f.kind for f in findings}))
            score = max((f.score for f in findings), default=0.0)
            result.verdicts.append(
                Verdict(step.scanner.name, step.action, flagged, kinds, score, (time.perf_counter() - t0) * 1000)
            )
        return result

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the span-finding scanners find something in `text` (to know where a stream may be cut)."""
        return sorted(
            (f.start, f.end)
            for step in self.steps
            if step.scanner.redacts
            for f in step.scanner.find(text)
        )


class StreamScanner:
    """Scans one stream of text (a generation's choice) as it arrives."""

    def __init__(self, pipeline: Pipeline, hold: int = 64, step: int = 16) -> None:
        self.pipeline = pipeline
        self.hold = hold
        # Scan once `step` more characters than the hold have come (not at every token: a token is ~4
        # characters, and scanning each would cost the stream several scans per token).
        self.step = step
        self._blocks = any(s.action is Action.BLOCK for s in pipeline.steps)
        self._pending = ""  # received, not yet released
        self._tail = ""  # the end of what was released (context for blocking scanners)
        self.blocked_by: str | None = None
        self.verdicts: dict[str, Verdict] = {}

    def _record(self, result: ScanResult) -> None:
        for v in result.verdicts:
            old = self.verdicts.get(v.scanner)
            if old is None or (v.flagged and not old.flagged):
                self.verdicts[v.scanner] = v
            elif old is not None:
                self.verdicts[v.scanner] = Verdict(
                    old.scanner, old.action, old.flagged or v.flagged, tuple(sorted({*old.kinds, *v.kinds})),
                    max(old.score, v.score), old.time_ms + v.time_ms,
                )

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; returns what may be released and whether the stream is blocked."""
        if self.blocked_by is not None:
            return "", True
        self._pending += text
        if len(self._pending) < self.hold + self.step:
            return "", False
        if self._blocks:
            # Blocking looks at the pending text with the tail of what was released before it, so that a banned
            # phrase split across the release point is still seen whole.
            check = self.pipeline.scan(self._tail + self._pending)
            if check.blocked_by is not None:
                self._record(check)
                self.blocked_by = check.blocked_by
                self._pending = ""
                return "", True
        cut = len(self._pending) - self.hold
        if cut <= 0:
            return "", False
        # Never cut through something a scanner finds: it could still be growing (an e-mail's domain) or be
        # only half a secret. The cut moves back to the start of any finding that crosses it (latest first, so
        # that a finding overlapping the one it moved back to is seen too).
        for start, end in sorted(self.pipeline.spans(self._pending), reverse=True):
            if start < cut < end:
                cut = start
        if cut <= 0:
            return "", False
        result = self.pipeline.scan(self._pending[:cut])
        self._record(result)
        if result.blocked_by is not None:
            self.blocked_by = result.blocked_by
            self._pending = ""
            return "", True
        self._tail = (self._tail + self._pending[:cut])[-self.hold :]
        self._pending = self._pending[cut:]
        return result.text, False

    def flush(self) -> tuple[str, bool]:
        """The stream ended: scan and release the rest."""
        if self.blocked_by is not None:
            return "", True
        if not self._pending:
            return "", False
        result = self.pipeline.scan(self._pending)
        self._record(result)
        self._pending = ""
        if result.blocked_by is None and self._tail:
            whole = self.pipeline.scan(self._tail + result.text)
            result.blocked_by = whole.blocked_by
        if result.blocked_by is not None:
            self.blocked_by = result.blocked_by
            return "", True
        return result.text, False
