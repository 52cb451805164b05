"""What a prediction runs: a Cog prediction (`PredictJob`) or a language-model generation (`GenerationJob`).

Admission builds the job; the model's runtime runs it. A generation has one or more `Choice`s (OpenAI's `n`, or
several prompts), run at once on the model's engine; the runtime fills each choice as tokens arrive, and
`render` (given by the API that asked, no HTTP in it) turns the finished job into the prediction's stored output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cocina.serving.events import TokenLogprob


@dataclass
class PredictJob:
    """A Cog prediction (or training) on validated, normalized inputs, with the request's context (Cog's
    `current_scope().context`)."""

    inputs: dict[str, Any]
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling options of one generation (the fields of the engine's `SamplingParams`), already validated."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False

    def to_params(self) -> dict[str, Any]:
        """The engine's `SamplingParams` fields (seeds folded into the engine's range)."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": None if self.seed is None else self.seed % 2**63,
            "stop": list(self.stop),
            "logprobs": self.logprobs,
            "ignore_eos": self.ignore_eos,
        }


@dataclass
class Choice:
    """One generation of a job: its prompt and options, and what it has produced so far."""

    index: int
    prompt_ids: list[int]
    options: GenerationOptions
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class GenerationJob:
    """A language-model request: its choices and how the finished job is stored (`render(job)`)."""

    choices: list[Choice]
    render: Callable[[GenerationJob], Any]
    first_output_at: float | None = None  # time.monotonic() of the first text (time to first token)

    @property
    def prompt_tokens(self) -> int:
        """Each prompt counted once, however many choices were drawn from it."""
        seen: set[int] = set()
        total = 0
        for c in self.choices:
            if id(c.prompt_ids) not in seen:
                seen.add(id(c.prompt_ids))
                total += len(c.prompt_ids)
        return total

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    def usage(self) -> dict[str, int]:
        """OpenAI's `usage` object."""
        prompt, completion = self.prompt_tokens, self.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def partial(self) -> dict[str, Any]:
        """What a failed or canceled job had produced, per choice."""
        return {"choices": [{"index": c.index, "text": c.text, "finish_reason": c.finish_reason} for c in self.choices]}


Job = PredictJob | GenerationJob
