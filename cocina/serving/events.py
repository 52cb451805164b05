"""A prediction's events, typed: every API renders the same stream in its own wire format.

Cog SSE and webhooks, Replicate's stream and OpenAI's chunks (and later the web page) all read a prediction as
`Started`, then `LogChunk` / `OutputChunk` / `MetricChunk` (a predictor) or `TokenChunk` / `ChoiceFinished` (a
language-model generation), then one `Completed`. A late subscriber whose history was cut short gets one
`ReplayTruncated` instead (see `Serving.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cocina.store import PredictionStatus


@dataclass(frozen=True)
class Started:
    """The prediction left the queue and began to run."""


@dataclass(frozen=True)
class LogChunk:
    """Text the predictor wrote (`source` is stdout or stderr)."""

    data: str
    source: str = "stdout"


@dataclass(frozen=True)
class OutputChunk:
    """One item of an iterator output (`index` counts from 0), or the whole value of a plain output."""

    value: Any
    index: int = 0


@dataclass(frozen=True)
class MetricChunk:
    """A metric the predictor recorded (`current_scope().record_metric`): `mode` is `replace`, `increment` or
    `append`; the prediction's `metrics` hold the result of all of them once it ends."""

    name: str
    value: Any
    mode: str = "replace"


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and the top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TokenChunk:
    """New text of one choice of a generation."""

    choice: int
    text: str
    num_tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ChoiceFinished:
    """One choice of a generation ended: `reason` is OpenAI's finish_reason (`stop`, `length`)."""

    choice: int
    reason: str
    completion_tokens: int


@dataclass(frozen=True)
class Completed:
    """The prediction ended (always the last event)."""

    status: PredictionStatus


@dataclass(frozen=True)
class ReplayTruncated:
    """A subscriber came late and `skipped` earlier events are no longer kept: the stream ends here."""

    skipped: int


PredictionEvent = (
    Started | LogChunk | OutputChunk | MetricChunk | TokenChunk | ChoiceFinished | Completed | ReplayTruncated
)
