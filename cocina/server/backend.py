"""The backend protocols the server depends on, and the events they yield.

The HTTP layer imports neither the worker's process code nor the engine, only the worker's event types. It talks
to a `PredictorBackend` (a Cog predictor: setup, schema, validation, predict as a stream of events, cancel,
shutdown) and, for language models, a `TextGenerator` (tokenize, apply the chat template, generate token deltas).
`cocina.server.adapters` wraps the worker's `Runner` and the engine's `AsyncLLMEngine` in these; tests use small
real in-process backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# One event vocabulary for every backend: the worker's typed events (no torch, no process code in that module).
from cocina.worker.events import Done as Done
from cocina.worker.events import Log as Log
from cocina.worker.events import Output as Output
from cocina.worker.events import PredictionEvent, SetupStatus
from cocina.worker.events import PredictionStatus as PredictionStatus


@dataclass(frozen=True)
class SetupInfo:
    """What `PredictorBackend.start()` returns; shown by `/health-check`."""

    status: SetupStatus
    logs: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None


PredictEvent = PredictionEvent  # the worker's event vocabulary is the server's too


class InvalidInput(Exception):
    """The input does not fit the predictor's schema; `errors` are Cog 422 `detail[]` items."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("invalid input")
        self.errors = [dict(e) for e in errors]


@runtime_checkable
class PredictorBackend(Protocol):
    """A Cog predictor the server runs predictions on.

    `predict` is an async iterator of `Log`/`Output`/`Done` that ends with exactly one `Done`; it never raises for a
    predictor's own errors (those are `Done(FAILED, error)`). `cancel` asks a running prediction to stop; its
    `predict` iterator then ends with `Done(CANCELED)`.
    """

    @property
    def openapi_schema(self) -> dict[str, Any]:
        """The predictor's OpenAPI document in Cog's form (valid after a successful `start`)."""
        ...

    @property
    def max_concurrency(self) -> int:
        """How many predictions the backend runs at once."""
        ...

    async def start(self) -> SetupInfo: ...

    def validate(self, raw_input: dict[str, Any]) -> dict[str, Any]:
        """Normalized input (defaults filled, unknown fields dropped) or `InvalidInput`."""
        ...

    def predict(self, inputs: dict[str, Any], prediction_id: str) -> AsyncIterator[PredictEvent]: ...

    async def cancel(self, prediction_id: str) -> None: ...

    async def shutdown(self, grace_s: float) -> None: ...


# ------------------------------------------------------------------------------------------------------------
# Language models (OpenAI surface)


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling options of one OpenAI request, already validated by the API layer (mirrors engine
    SamplingParams)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and the top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text (and its token ids) from a generation."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    """The generation ended: `reason` is OpenAI's finish_reason (`stop`, `length`)."""

    reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class GenerationFailed:
    """The engine could not finish the generation."""

    message: str


GenerationEvent = TextDelta | Finished | GenerationFailed


class GeneratorOverloaded(Exception):
    """The engine's waiting queue is full."""


@runtime_checkable
class TextGenerator(Protocol):
    """A language model behind the OpenAI surface.

    Cancelling (closing) a `generate` iterator aborts the request and frees its resources.
    """

    @property
    def model_name(self) -> str: ...

    @property
    def max_model_len(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of the chat template applied to `messages` with the generation prompt."""
        ...

    def generate(
        self, prompt_ids: list[int], options: GenerationOptions, request_id: str
    ) -> AsyncIterator[GenerationEvent]: ...


@dataclass
class Backends:
    """What a server serves: always a predictor; a text generator for LLM projects."""

    predictor: PredictorBackend
    generator: TextGenerator | None = None
    extra: dict[str, Any] = field(default_factory=dict)
