"""One pipeline for every scanner: normalise, then each scanner with its action, timed, with a verdict each.

`Pipeline.scan(text)` returns the text to use (normalised, with redactions) and the verdicts. `StreamScanner`
does the same for output that arrives in pieces: it holds back the tail of the text (at most `hold` characters,
longer while a finding may still be growing) so that a secret split across two chunks is still redacted, and it
reports a block as soon as a blocking scanner fires.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
    """Replace each finding's span (overlaps merged, the first kind kept) by its redaction mark."""
    spans = sorted(findings, key=lambda f: (f.start, -f.end))
    out, pos = [], 0
    for f in spans:
        if f.start < pos:
            continue
        out.append(text[pos : f.start])
        out.append(redaction(f.kind))
        pos = f.end
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


class StreamScanner:
    """Scans one stream of text (a generation's choice) as it arrives."""

    def __init__(self, pipeline: Pipeline, hold: int = 64) -> None:
        self.pipeline = pipeline
        self.hold = hold
        self._pending = ""  # received, not yet released
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
        if len(self._pending) <= self.hold:
            return "", False
        result = self.pipeline.scan(self._pending)
        self._record(result)
        if result.blocked_by is not None:
            self.blocked_by = result.blocked_by
            self._pending = ""
            return "", True
        # Release all but the last `hold` characters of the scanned text, and never cut inside a redaction mark
        # (the rest is scanned again with what follows, so a secret split across chunks is still found whole).
        scanned = result.text
        cut = len(scanned) - self.hold
        mark = scanned.rfind("[REDACTED:", 0, cut + 1)
        if mark != -1 and scanned.find("]", mark) >= cut:
            cut = mark
        # The held-back tail is re-scanned from the original text: map it back by taking the same suffix
        # length of raw text when nothing was redacted in it, else keep the scanned (already redacted) tail.
        released, self._pending = scanned[:cut], scanned[cut:]
        return released, False

    def flush(self) -> tuple[str, bool]:
        """The stream ended: scan and release the rest."""
        if self.blocked_by is not None:
            return "", True
        if not self._pending:
            return "", False
        result = self.pipeline.scan(self._pending)
        self._record(result)
        self._pending = ""
        if result.blocked_by is not None:
            self.blocked_by = result.blocked_by
            return "", True
        return result.text, False
