"""A finished prediction's events rebuilt from its stored record (for streams opened after it left memory)."""

from __future__ import annotations

from cocina.serving.events import Completed, LogChunk, OutputChunk, PredictionEvent, Started
from cocina.store import PredictionRecord


def replay(rec: PredictionRecord, iterator_output: bool) -> list[PredictionEvent]:
    """`Started`, the logs as one chunk, the output (item by item for an iterator), then `Completed` if it
    ended."""
    events: list[PredictionEvent] = [Started()]
    if rec.logs:
        events.append(LogChunk(rec.logs, "stdout"))
    if rec.output is not None:
        chunks = rec.output if iterator_output and isinstance(rec.output, list) else [rec.output]
        events += [OutputChunk(c, i) for i, c in enumerate(chunks)]
    if rec.status.is_terminal:
        events.append(Completed(rec.status))
    return events
