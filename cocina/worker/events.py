"""Typed messages between the runner (parent) and the worker child, and the events a prediction yields.

Four public events reach the runner's callers: `Log`, `Output`, `Metric` and `Done`. The rest are wire messages
between the two processes. On the wire every message is one line of JSON `{"type": ..., "tag": ..., ...}` so that the
framing survives a child that dies halfway: the parent reads whole lines and ignores a torn last one.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "Cancel",
    "Done",
    "Encode",
    "Encoded",
    "Generate",
    "GenerationEnd",
    "Healthcheck",
    "HealthcheckResult",
    "Log",
    "Metric",
    "Output",
    "OutputKind",
    "PredictRequest",
    "PredictionEvent",
    "PredictionStatus",
    "SchemaReady",
    "SetupDone",
    "SetupResult",
    "SetupStatus",
    "Shutdown",
    "Stats",
    "StatsRequest",
    "Tokens",
    "decode",
    "encode",
    "output_kind",
]


class PredictionStatus(enum.StrEnum):
    """The lifecycle of one prediction, with Cog's names."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """True for succeeded, failed and canceled."""
        return self in (PredictionStatus.SUCCEEDED, PredictionStatus.FAILED, PredictionStatus.CANCELED)


class SetupStatus(enum.StrEnum):
    """The outcome of `setup()` (Cog's health-check `setup.status`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OutputKind(enum.StrEnum):
    """How a predictor's output is delivered, read from the schema's `Output`."""

    VALUE = "value"  # one Output event with the whole value
    ITERATOR = "iterator"  # one Output event per item
    CONCATENATE = "concatenate"  # one per item, and the items are text to be joined without separators


# --- public events (what `Runner.predict` yields) ---


@dataclass(frozen=True)
class Log:
    """A chunk of the predictor's stdout or stderr; `traceback` marks the traceback of a failure."""

    data: str
    source: Literal["stdout", "stderr"] = "stdout"
    traceback: bool = False


@dataclass(frozen=True)
class Output:
    """One item of an iterator output, or the whole value of a plain output (JSON-able, files as markers)."""

    value: Any


@dataclass(frozen=True)
class Metric:
    """A metric the predictor recorded (`current_scope().record_metric`), as it happens; `mode` is "replace",
    "increment" or "append" (Cog's names). `Done.metrics` holds the result of all of them."""

    name: str
    value: Any
    mode: str = "replace"


@dataclass(frozen=True)
class Done:
    """The end of a prediction; always the last event."""

    status: PredictionStatus
    error: str | None = None
    predict_time: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)  # what the predictor recorded with record_metric


PredictionEvent = Log | Output | Metric | Done


@dataclass(frozen=True)
class HealthcheckResult:
    """The outcome of the predictor's own `healthcheck()` (`Runner.healthcheck()`); `error` says why it is
    unhealthy, in Cog's words (its /health-check `user_healthcheck_error`)."""

    healthy: bool
    error: str | None = None


@dataclass(frozen=True)
class SetupResult:
    """What `Runner.start()` returns."""

    status: SetupStatus
    logs: str
    started_at: datetime
    completed_at: datetime
    error: str | None = None


def output_kind(openapi: dict[str, Any]) -> OutputKind:
    """Read from an OpenAPI schema whether the output streams (Cog's `x-cog-array-type` extensions); a training
    schema's output is `TrainingOutput`."""
    schemas = openapi.get("components", {}).get("schemas", {})
    output = schemas.get("Output", schemas.get("TrainingOutput", {}))
    if output.get("x-cog-array-type") != "iterator":
        return OutputKind.VALUE
    if output.get("x-cog-array-display") == "concatenate":
        return OutputKind.CONCATENATE
    return OutputKind.ITERATOR


# --- wire messages ---


@dataclass(frozen=True)
class PredictRequest:
    """Parent -> child: run a prediction with normalized JSON inputs; `context` is the request's `context`
    object, which the predictor reads as `current_scope().context`."""

    inputs: dict[str, Any]
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancel:
    """Parent -> child: cancel the prediction with this tag."""


@dataclass(frozen=True)
class Shutdown:
    """Parent -> child: finish the running predictions and exit."""


@dataclass(frozen=True)
class Healthcheck:
    """Parent -> child: run the predictor's `healthcheck()` (its tag identifies the answer)."""


@dataclass(frozen=True)
class SchemaReady:
    """Child -> parent: predict.py imported; its OpenAPI schema, sent before setup() runs. `streaming`: the
    predict function is marked `@streaming`; `concurrency_max`: its `@concurrent(max=...)`, if any."""

    openapi: dict[str, Any]
    is_async: bool = False
    streaming: bool = False
    concurrency_max: int | None = None


@dataclass(frozen=True)
class SetupDone:
    """Child -> parent: setup() finished (or import failed, in which case no SchemaReady came before).

    `language_model` is set when the predictor runs on cocina's engine (`cocina.llm.LLMPredictor`): the child
    then also answers `Encode`, `Generate` and `StatsRequest` (`{"max_model_len": N, "model": ...}`).
    """

    status: SetupStatus
    error: str | None = None
    language_model: dict[str, Any] | None = None


# --- the language-model channel (children whose predictor runs on cocina's engine) ---


@dataclass(frozen=True)
class Encode:
    """Parent -> child: token ids of a text, or of chat messages through the model's chat template (with the
    assistant's turn opened). Answered by `Encoded` with the same tag."""

    text: str | None = None
    messages: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Encoded:
    """Child -> parent: the token ids asked for, or why they could not be made."""

    token_ids: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Generate:
    """Parent -> child: generate from `prompt_ids` with `params` (the fields of the engine's
    `SamplingParams`). Answered by `Tokens` events, then one `GenerationEnd`; `Cancel` aborts it."""

    prompt_ids: list[int]
    params: dict[str, Any]


@dataclass(frozen=True)
class Tokens:
    """Child -> parent: new text of a generation, with its token ids and (if asked) log-probabilities
    `[[token, logprob, [[alt, logprob], ...]], ...]`."""

    text: str
    token_ids: list[int]
    logprobs: list[Any] | None = None


@dataclass(frozen=True)
class GenerationEnd:
    """Child -> parent: the generation ended; `reason` is `stop`, `length`, `abort` or `error` (with
    `error`)."""

    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class StatsRequest:
    """Parent -> child: the engine's statistics, answered by `Stats` with the same tag."""


@dataclass(frozen=True)
class Stats:
    """Child -> parent: the engine's `EngineStats` as plain data (`kv_cache_usage` included)."""

    data: dict[str, Any]


_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Log,
        Output,
        Metric,
        Done,
        PredictRequest,
        Cancel,
        Shutdown,
        Healthcheck,
        HealthcheckResult,
        SchemaReady,
        SetupDone,
        Encode,
        Encoded,
        Generate,
        Tokens,
        GenerationEnd,
        StatsRequest,
        Stats,
    )
}


def encode(event: Any, tag: str | None = None) -> bytes:
    """One wire line for `event`, attributed to prediction `tag` (None: the process, e.g. during setup)."""
    body = asdict(event)
    body["type"] = type(event).__name__
    body["tag"] = tag
    return (json.dumps(body, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> tuple[str | None, Any]:
    """The (tag, event) of one wire line; raises ValueError on a line that is not a message."""
    body = json.loads(line)
    kind = _TYPES.get(body.pop("type", None))
    if kind is None:
        raise ValueError(f"unknown message {line[:80]!r}")
    tag = body.pop("tag", None)
    if kind is Done:
        body["status"] = PredictionStatus(body["status"])
    elif kind is SetupDone:
        body["status"] = SetupStatus(body["status"])
    return tag, kind(**body)
